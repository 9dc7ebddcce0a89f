-- Users. Ids are bigint identities (JSON strings on the wire). Names keep the case the user typed;
-- search compares lower-cased names byte-wise (collation "C").
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

-- Prefix search on (first name, second name), ordered by id. Keyed by the first two lower-cased
-- characters of each name, then id: a search whose prefixes both have two or more characters is
-- one equality lookup that walks matches already in id order and stops after a page. Every
-- returned column is included, so the whole search is an index-only scan (no table access).
-- See docs/search-index.md for the plans and measurements that chose it.
create index users_name_search_idx on users (
    (left(lower(first_name), 2) collate "C"),
    (left(lower(second_name), 2) collate "C"),
    id
) include (first_name, second_name, birthdate, biography, city);
