-- The live feed hands a socket exactly the posts created while its user followed the author, even
-- when the post is routed after an unfollow (or a follow) that came later. Follows and unfollows
-- are recorded here for a day, each stamped from the posts' own id sequence: a transaction that
-- committed before another began drew the smaller value, so a post's id and a change's clock say
-- which came first. Who followed an author when post P was made = who follows now, corrected by
-- each user's first change after P (a follow: they did not follow yet; an unfollow: they did).
create table follow_changes (
    friend_id bigint not null,
    user_id bigint not null,
    followed boolean not null,
    clock bigint not null,
    at timestamptz not null default now()
);
do $$
begin
    execute format(
        'alter table follow_changes alter column clock set default nextval(%L)',
        pg_get_serial_sequence('posts', 'id')
    );
end
$$;
-- An author's changes after a post, in order.
create index follow_changes_author_idx on follow_changes (friend_id, clock);
-- Changes older than a day are dropped (posts routed later than that are not corrected).
create index follow_changes_age_idx on follow_changes (at);
