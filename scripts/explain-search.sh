#!/usr/bin/env bash
# EXPLAIN (ANALYZE, BUFFERS) of the user search query for a few prefix pairs, as the server runs it
# (a prepared statement with a generic plan). Usage: scripts/explain-search.sh [DATABASE_URL]
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/socialnet_bench}
pairs=("ал:см" "ан:ив" "joh:smi" "вла:кузн" "mar:jo")
for pair in "${pairs[@]}"; do
  first=${pair%%:*}; second=${pair#*:}
  echo "---- first_name=$first last_name=$second"
  psql "$url" -X -q -v ON_ERROR_STOP=1 <<SQL
set plan_cache_mode = force_generic_plan;
prepare search(text, text, bigint, bigint) as
  select id, first_name, second_name, birthdate, biography, city
  from users
  where lower(first_name) collate "C" >= lower(\$1)
    and lower(first_name) collate "C" < lower(\$1) || chr(1114111)
    and lower(second_name) collate "C" >= lower(\$2)
    and lower(second_name) collate "C" < lower(\$2) || chr(1114111)
  order by id
  limit \$3 offset \$4;
execute search('$first', '$second', 100, 0);
explain (analyze, buffers, costs off) execute search('$first', '$second', 100, 0);
SQL
done
