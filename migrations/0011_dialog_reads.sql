-- How far each party of a dialog has read it: the highest message number each has marked read
-- (`PUT /dialog/{user_id}/read`), 0 for none. Kept on the dialog's own row, so that a mark is
-- routed to the same shard as the dialog's messages on Citus, and clamped there to the dialog's
-- last message, so that a mark never covers a message not sent yet. The unread counters in Redis
-- are derived from these marks and the messages, and rebuilt from them when lost.
alter table dialogs
    add column read_low bigint not null default 0,
    add column read_high bigint not null default 0;
