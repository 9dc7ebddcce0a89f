-- Events waiting to be published to RabbitMQ. A post write and its event row commit together (one
-- statement), so an event exists exactly when its change does. The relay publishes rows in id
-- order with publisher confirms and deletes them once the broker has confirmed them: a row's
-- absence is its "sent" mark, which keeps the table (and its index) as small as the backlog.
create table outbox (
    id bigint generated always as identity primary key,
    -- The routing key: post.created, post.updated, post.deleted.
    kind text not null,
    payload jsonb not null,
    created_at timestamptz not null default now()
);
