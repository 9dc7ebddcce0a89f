-- Users. Ids are bigint identities (JSON strings on the wire). Names keep the case the user typed;
-- search compares lower-cased names byte-wise (collation "C"), so a prefix is one index range.
create table users (
    id bigint generated always as identity primary key,
    first_name text not null,
    second_name text not null,
    birthdate date not null,
    biography text not null default '',
    city text not null default '',
    password_hash text not null,
    is_admin boolean not null default false,
    created_at timestamptz not null default now()
);

-- Prefix search on (first name, second name); see docs/search-index.md for the plans behind it.
create index users_name_search_idx on users (
    (lower(first_name) collate "C"),
    (lower(second_name) collate "C")
);
