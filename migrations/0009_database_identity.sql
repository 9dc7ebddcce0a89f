-- The identity of this database, made once when it is created: caches outside the database
-- (the Redis feed cache) key their entries by it, so that a dropped and recreated database, or
-- another one under the same cache settings, never reads entries made for a different one.
create table database_identity (
    only_row boolean primary key default true check (only_row),
    epoch uuid not null default gen_random_uuid(),
    created_at timestamptz not null default now()
);
insert into database_identity default values;
