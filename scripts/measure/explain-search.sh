#!/usr/bin/env bash
# EXPLAIN (ANALYZE, BUFFERS) of user search under three designs, on a database filled with
# `socialnet fake users`: no index (sequential scan), a plain btree on the two lower-cased names
# (range scan), and the shipped head index (users_name_search_idx, walked in id order).
# Each query runs as the server runs it: a prepared statement with a generic plan, warm cache.
# Usage: scripts/measure/explain-search.sh [DATABASE_URL] > plans.txt
# It leaves the database as it found it (everything happens in rolled-back transactions).
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/socialnet_bench}
pairs=("ал:см" "ан:ив" "алла:смирнова" "вла:кузн" "mar:jo" "joh:smi")

range_query='select id, first_name, second_name, birthdate, biography, city from users
  where lower(first_name) collate "C" >= lower($1) and lower(first_name) collate "C" < lower($1) || chr(1114111)
    and lower(second_name) collate "C" >= lower($2) and lower(second_name) collate "C" < lower($2) || chr(1114111)
  order by id limit $3 offset $4'
head_query='select id, first_name, second_name, birthdate, biography, city from users
  where left(lower(first_name), 2) collate "C" = left(lower($1), 2)
    and left(lower(second_name), 2) collate "C" = left(lower($2), 2)
    and starts_with(lower(first_name), (select lower($1)))
    and starts_with(lower(second_name), (select lower($2)))
  order by id limit $3 offset $4'

run() { # name, setup SQL, query
  echo "=================== $1"
  for pair in "${pairs[@]}"; do
    first=${pair%%:*}; second=${pair#*:}
    echo "---- first_name=$first last_name=$second"
    psql "$url" -X -q -v ON_ERROR_STOP=1 <<SQL
begin;
$2
set local plan_cache_mode = force_generic_plan;
prepare q(text, text, bigint, bigint) as $3;
execute q('$first', '$second', 100, 0) \g /dev/null
explain (analyze, buffers, costs off) execute q('$first', '$second', 100, 0);
rollback;
SQL
  done
}

run "no index: sequential scan" "drop index if exists users_name_search_idx;" "$range_query"
run "btree (lower(first_name), lower(second_name)): range scan" \
  "drop index if exists users_name_search_idx;
   create index users_name_range_idx on users ((lower(first_name) collate \"C\"), (lower(second_name) collate \"C\"));
   analyze users;" "$range_query"
run "shipped: users_name_search_idx (heads, id, lower-cased names) include (every returned column)" "" "$head_query"
