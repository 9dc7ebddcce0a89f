-- The search index again, with the lower-cased names as key columns after id. The order of the walk
-- is unchanged (two-character heads, then id); what changes is the prefix test of a prefix longer
-- than two characters: PostgreSQL now reads `lower(first_name)` and `lower(second_name)` from the
-- index entry instead of lower-casing both names of every candidate, which was a fifth of its CPU
-- per search (docs/search-index.md). Expressions cannot be INCLUDE columns, hence key columns.
-- Building it blocks writes to users for the length of the build (seconds at a million users).
drop index if exists users_name_search_idx;
create index users_name_search_idx on users (
    (left(lower(first_name), 2) collate "C"),
    (left(lower(second_name), 2) collate "C"),
    id,
    (lower(first_name)),
    (lower(second_name))
) include (first_name, second_name, birthdate, biography, city);
