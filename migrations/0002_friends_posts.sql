-- Friends are directional: user_id follows friend_id ("I see their posts").
create table friends (
    user_id bigint not null references users (id) on delete cascade,
    friend_id bigint not null references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    primary key (user_id, friend_id),
    check (user_id <> friend_id)
);
-- Who follows an author: the fan-out of a new post.
create index friends_followers_idx on friends (friend_id, user_id);

-- Posts. Ids grow with time, so "newest first" is "highest id first".
create table posts (
    id bigint generated always as identity primary key,
    author_id bigint not null references users (id) on delete cascade,
    text text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz
);
-- An author's latest posts: the feed reads a few per followed author.
create index posts_author_idx on posts (author_id, id desc);
