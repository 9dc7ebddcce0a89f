-- Private dialogs, shaped for sharding by the dialog: every row carries `dialog_id` (a mix of the
-- unordered pair of users, computed by the application) and every query filters on it, so on
-- Citus both tables are distributed by it, co-located, and a dialog's rows live on one shard.

-- One row per dialog: the pair, and the counter that numbers its messages.
create table dialogs (
    dialog_id bigint primary key,
    user_low bigint not null references users (id),
    user_high bigint not null references users (id),
    last_message_id bigint not null,
    created_at timestamptz not null default now(),
    check (user_low < user_high)
);

-- Messages are numbered 1, 2, 3… within their dialog: unique and ordered where it matters, with no
-- global sequence for every shard to contend on. The primary key is also the index that makes
-- "the latest N of a dialog" (and each next page, `id < cursor`) one backward range scan.
create table dialog_messages (
    dialog_id bigint not null,
    id bigint not null,
    sender_id bigint not null references users (id),
    recipient_id bigint not null references users (id),
    text text not null,
    created_at timestamptz not null default now(),
    primary key (dialog_id, id)
);

-- Sending is one call: bump the dialog's counter (creating the dialog on its first message; the
-- row lock orders concurrent sends in one dialog), then store the message under the new number.
-- A function, so that on Citus the whole call is delegated to the worker holding the dialog's
-- shards (create_distributed_function, by p_dialog_id) and runs there in one local transaction:
-- one round trip from the coordinator, no two-phase commit.
create function send_dialog_message(
    p_dialog_id bigint,
    p_user_low bigint,
    p_user_high bigint,
    p_sender bigint,
    p_recipient bigint,
    p_text text
) returns bigint language plpgsql as $$
declare
    next_id bigint;
begin
    insert into dialogs as d (dialog_id, user_low, user_high, last_message_id)
    values (p_dialog_id, p_user_low, p_user_high, 1)
    on conflict (dialog_id) do update set last_message_id = d.last_message_id + 1
    returning last_message_id into next_id;
    insert into dialog_messages (dialog_id, id, sender_id, recipient_id, text)
    values (p_dialog_id, next_id, p_sender, p_recipient, p_text);
    return next_id;
end
$$;
