-- How many messages each party of a dialog has sent, kept on the dialog's row beside its marks.
-- The unread counters are counts, not sets of message numbers (src/cache/unread.rs): a reader's
-- unread messages from the other party are the other's sent count less how many of those are at
-- or below the reader's mark, two numbers that only grow, so an event told twice, late or out of
-- order changes nothing more, and Redis keeps one field per dialog side, not one per message.
alter table dialogs
    add column sent_low bigint not null default 0,
    add column sent_high bigint not null default 0;

-- The dialogs already there: their messages counted by sender (the low user writes to the high).
update dialogs d
set sent_low = c.by_low, sent_high = c.by_high
from (
    select dialog_id,
           count(*) filter (where sender_id < recipient_id) as by_low,
           count(*) filter (where sender_id > recipient_id) as by_high
    from dialog_messages
    group by dialog_id
) c
where c.dialog_id = d.dialog_id;

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

-- The old call, for a server of the version before that is still running: it counts too.
create or replace function send_dialog_message(
    p_dialog_id bigint,
    p_user_low bigint,
    p_user_high bigint,
    p_sender bigint,
    p_recipient bigint,
    p_text text
) returns bigint language sql as $$
    select (store_dialog_message(p_dialog_id, p_user_low, p_user_high, p_sender, p_recipient, p_text))[1]
$$;

-- Marking read, as one call: the mark rises to `p_up_to` clamped to the dialog's last message;
-- returns {the mark now, 1 if this call raised it, how many of the other party's messages are at
-- or below it}, or null for a dialog with no message. The count is a statement of its own, after
-- the row is locked and updated: it sees every message the sent count has counted (a send that
-- committed while this call waited for the lock included), so the two agree. Delegated on Citus,
-- as the send is.
create function read_dialog(
    p_dialog_id bigint,
    p_user_low bigint,
    p_user_high bigint,
    p_reader_is_low boolean,
    p_up_to bigint
) returns bigint[] language plpgsql as $$
declare
    v_before bigint;
    v_mark bigint;
    v_sent_other bigint;
    v_above bigint;
begin
    select case when p_reader_is_low then read_low else read_high end into v_before
    from dialogs
    where dialog_id = p_dialog_id and user_low = p_user_low and user_high = p_user_high
    for update;
    if not found then
        return null;
    end if;
    update dialogs d set
        read_low = case when p_reader_is_low
                        then greatest(d.read_low, least(p_up_to, d.last_message_id))
                        else d.read_low end,
        read_high = case when p_reader_is_low then d.read_high
                         else greatest(d.read_high, least(p_up_to, d.last_message_id)) end
    where d.dialog_id = p_dialog_id and d.user_low = p_user_low and d.user_high = p_user_high
    returning case when p_reader_is_low then d.read_low else d.read_high end,
              case when p_reader_is_low then d.sent_high else d.sent_low end
    into v_mark, v_sent_other;
    select count(*) into v_above
    from dialog_messages m
    where m.dialog_id = p_dialog_id and m.id > v_mark
      and m.recipient_id = case when p_reader_is_low then p_user_low else p_user_high end
      and m.sender_id = case when p_reader_is_low then p_user_high else p_user_low end;
    return array[v_mark, (v_mark > v_before)::int, v_sent_other - v_above];
end
$$;
