-- The unread counters' two counts per dialog side, kept on the dialog's row beside the marks:
-- how many messages each party has sent (sent_low, sent_high), and how many of the other's each
-- party's mark covers (seen_low: high's messages at or below read_low; seen_high the other way).
-- A reader's unread messages are the other's sent count less their own seen count: two numbers
-- that only grow, so an event that carries them, told twice, late or out of order, changes
-- nothing more, and Redis keeps one field per dialog side, not one per message
-- (src/cache/unread.rs).
--
-- The functions first, and the old send's new body in a migration of its own (0013): on Citus a
-- function, which Citus creates on every node, cannot follow a statement that ran on several
-- shards at once in the same transaction, as the update below does; and a function Citus already
-- delegates is replaced by the text of the command, which must then be one command. The bodies
-- name the new columns, which plpgsql looks up only when called.

-- Sending, as send_dialog_message (0004) did, now also counting the sender's message; returns
-- {the message's number, the sender's messages in the dialog now}. One call, delegated on Citus
-- to the worker holding the dialog, as before.
create function store_dialog_message(
    p_dialog_id bigint,
    p_user_low bigint,
    p_user_high bigint,
    p_sender bigint,
    p_recipient bigint,
    p_text text
) returns bigint[] language plpgsql as $$
declare
    by_low boolean := p_sender = p_user_low;
    next_id bigint;
    sent bigint;
begin
    insert into dialogs as d (dialog_id, user_low, user_high, last_message_id, sent_low, sent_high)
    values (p_dialog_id, p_user_low, p_user_high, 1, by_low::int, (not by_low)::int)
    on conflict (dialog_id) do update
        set last_message_id = d.last_message_id + 1,
            sent_low = d.sent_low + by_low::int,
            sent_high = d.sent_high + (not by_low)::int
    returning last_message_id, case when by_low then d.sent_low else d.sent_high end
    into next_id, sent;
    insert into dialog_messages (dialog_id, id, sender_id, recipient_id, text)
    values (p_dialog_id, next_id, p_sender, p_recipient, p_text);
    return array[next_id, sent];
end
$$;

-- Marking read: the mark rises to `p_up_to` clamped to the dialog's last message; returns {the
-- mark now, 1 if this call raised it, how many of the other party's messages it covers}, or null
-- for a dialog with no message. A mark that does not rise is answered from the row alone, locking
-- nothing; one that rises counts only the other's messages it newly covers, once the row is
-- locked (every message up to the last one is then committed, so the count sees them all), and
-- keeps the sum: each message is counted once in the dialog's life. Delegated on Citus, as the
-- send is.
create function read_dialog(
    p_dialog_id bigint,
    p_user_low bigint,
    p_user_high bigint,
    p_reader_is_low boolean,
    p_up_to bigint
) returns bigint[] language plpgsql as $$
declare
    v_before bigint;
    v_seen bigint;
    v_last bigint;
    v_mark bigint;
    v_added bigint;
begin
    select case when p_reader_is_low then read_low else read_high end,
           case when p_reader_is_low then seen_low else seen_high end,
           last_message_id
    into v_before, v_seen, v_last
    from dialogs
    where dialog_id = p_dialog_id and user_low = p_user_low and user_high = p_user_high;
    if not found then
        return null;
    end if;
    if least(p_up_to, v_last) <= v_before then
        return array[v_before, 0, v_seen];
    end if;
    select case when p_reader_is_low then read_low else read_high end,
           case when p_reader_is_low then seen_low else seen_high end,
           last_message_id
    into v_before, v_seen, v_last
    from dialogs
    where dialog_id = p_dialog_id and user_low = p_user_low and user_high = p_user_high
    for update;
    v_mark := greatest(v_before, least(p_up_to, v_last));
    if v_mark = v_before then
        return array[v_before, 0, v_seen];
    end if;
    select count(*) into v_added
    from dialog_messages m
    where m.dialog_id = p_dialog_id and m.id > v_before and m.id <= v_mark
      and m.recipient_id = case when p_reader_is_low then p_user_low else p_user_high end
      and m.sender_id = case when p_reader_is_low then p_user_high else p_user_low end;
    v_seen := v_seen + v_added;
    update dialogs set
        read_low = case when p_reader_is_low then v_mark else read_low end,
        seen_low = case when p_reader_is_low then v_seen else seen_low end,
        read_high = case when p_reader_is_low then read_high else v_mark end,
        seen_high = case when p_reader_is_low then seen_high else v_seen end
    where dialog_id = p_dialog_id and user_low = p_user_low and user_high = p_user_high;
    return array[v_mark, 1, v_seen];
end
$$;

-- One column a statement: Citus passes an ALTER of several on by the text of the whole script.
alter table dialogs add column sent_low bigint not null default 0;
alter table dialogs add column sent_high bigint not null default 0;
alter table dialogs add column seen_low bigint not null default 0;
alter table dialogs add column seen_high bigint not null default 0;

-- The dialogs already there, counted from their messages (the low user writes to the high). One
-- pass over the messages, with `dialogs` locked meanwhile (sends and reads wait): about 1.6 s per
-- million messages on the lab's data (docs/lab/dialogs.md), past the statement timeout of the
-- server's pool at ten million, which this transaction lifts.
set local statement_timeout = 0;
update dialogs d
set sent_low = c.by_low, sent_high = c.by_high, seen_low = c.seen_by_low,
    seen_high = c.seen_by_high
from (
    select m.dialog_id,
           count(*) filter (where m.sender_id < m.recipient_id) as by_low,
           count(*) filter (where m.sender_id > m.recipient_id) as by_high,
           count(*) filter (where m.sender_id > m.recipient_id and m.id <= r.read_low)
               as seen_by_low,
           count(*) filter (where m.sender_id < m.recipient_id and m.id <= r.read_high)
               as seen_by_high
    from dialog_messages m
    join dialogs r on r.dialog_id = m.dialog_id
    group by m.dialog_id
) c
where c.dialog_id = d.dialog_id;
