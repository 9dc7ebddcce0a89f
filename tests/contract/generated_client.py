"""A client generated from the public OpenAPI document (openapi-python-client), used unchanged
against a running server, as its users would use it: register with the three required fields,
log in, read and search users, follow, post, read the feed with the numeric paging the client
sends (0.0 and 10.0), send and list dialog messages; and a websocket opened with the token gets
exactly the posts made while its user followed the author.

    python3 tests/contract/generated_client.py http://127.0.0.1:PORT

The generated package must be importable (scripts/contract.sh generates it and sets PYTHONPATH).
Exits non-zero, saying what went wrong, at the first thing that does not work.
"""

import asyncio
import json
import sys

import websockets
from otus_highload_architect_client import AuthenticatedClient, Client
from otus_highload_architect_client.api.default import (
    get_dialog_user_id_list,
    get_post_feed,
    get_user_get_id,
    get_user_search,
    post_dialog_user_id_send,
    post_login,
    post_post_create,
    post_user_register,
    put_friend_delete_user_id,
    put_friend_set_user_id,
)
from otus_highload_architect_client.models import (
    PostDialogUserIdSendBody,
    PostLoginBody,
    PostPostCreateBody,
    PostUserRegisterBody,
    User,
)
from otus_highload_architect_client.types import UNSET

PASSWORD = "generated-client-password"


def expect(condition, what):
    if not condition:
        sys.exit(f"generated client: {what}")


def main(base):
    anonymous = Client(base_url=base, raise_on_unexpected_status=True)

    def register(first, second):
        # Only the fields a person sets; the client leaves the others out.
        body = PostUserRegisterBody(first_name=first, second_name=second, password=PASSWORD)
        answer = post_user_register.sync(client=anonymous, body=body)
        expect(answer is not None and answer.user_id, f"register answered {answer!r}")
        return answer.user_id

    def log_in(user_id):
        answer = post_login.sync(client=anonymous, body=PostLoginBody(id=user_id, password=PASSWORD))
        expect(answer is not None and answer.token, f"login answered {answer!r}")
        return AuthenticatedClient(base_url=base, token=answer.token, raise_on_unexpected_status=True)

    reader_id = register("Генерат", "Клиентов")
    author_id = register("Автор", "Генератов")
    reader, author = log_in(reader_id), log_in(author_id)

    profile = get_user_get_id.sync(id=reader_id, client=anonymous)
    expect(isinstance(profile, User), f"profile answered {profile!r}")
    expect(profile.first_name == "Генерат" and profile.birthdate is UNSET, f"profile {profile!r}")
    found = get_user_search.sync(client=anonymous, first_name="Генер", last_name="Клиен")
    expect(isinstance(found, list) and [u.id for u in found] == [reader_id], f"search {found!r}")

    def follow():
        expect(put_friend_set_user_id.sync_detailed(user_id=author_id, client=reader).status_code == 200, "follow")

    def unfollow():
        expect(put_friend_delete_user_id.sync_detailed(user_id=author_id, client=reader).status_code == 200, "unfollow")

    def post(text):
        post_id = post_post_create.sync(client=author, body=PostPostCreateBody(text=text))
        expect(isinstance(post_id, str) and post_id, f"post/create answered {post_id!r}")
        return post_id

    async def live():
        url = base.replace("http://", "ws://") + f"/post/feed/posted?token={reader.token}"
        async with websockets.connect(url) as socket:
            follow()
            post("до отписки")
            unfollow()
            post("без подписки")
            follow()
            post("после подписки")
            texts = []
            while True:
                try:
                    frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=2))
                except asyncio.TimeoutError:
                    break
                expect(set(frame) == {"postId", "postText", "author_user_id"}, f"frame {frame}")
                texts.append(frame["postText"])
            expect(sorted(texts) == ["до отписки", "после подписки"], f"live frames {texts}")

    asyncio.run(live())

    # The client sends offset=0.0&limit=10.0 unless told otherwise, and floats when told.
    feed = get_post_feed.sync(client=reader)
    expect(isinstance(feed, list) and [p.text for p in feed] == ["после подписки", "без подписки", "до отписки"], f"feed {feed!r}")
    page = get_post_feed.sync(client=reader, offset=1.0, limit=1.0)
    expect(isinstance(page, list) and [p.text for p in page] == ["без подписки"], f"feed page {page!r}")

    sent = post_dialog_user_id_send.sync_detailed(user_id=author_id, client=reader, body=PostDialogUserIdSendBody(text="привет"))
    expect(sent.status_code == 200, f"dialog send answered {sent.status_code}")
    messages = get_dialog_user_id_list.sync(user_id=reader_id, client=author)
    expect(isinstance(messages, list) and [m.text for m in messages] == ["привет"], f"dialog list {messages!r}")
    expect(messages[0].from_ == reader_id and messages[0].to == author_id, f"dialog parties {messages[0]!r}")
    print("generated client: every call worked")


if __name__ == "__main__":
    main(sys.argv[1])
