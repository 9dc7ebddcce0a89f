-- The send of migration 0004, for a server of the version before 0012 that is still running
-- while the deployment upgrades: it now counts its sender's message too, through the send of 0012.
-- Alone in its migration: Citus replaces a function it delegates by the text of the command, which
-- must then be this one command.
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
