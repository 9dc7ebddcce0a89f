#!/usr/bin/env bash
# Query strings for GET /user/search: 2-3 letter prefixes of the first and second names of real
# users (a 2 % sample, at most 20,000), URL-encoded, one per line, for scripts/measure/wrk/search.lua.
#   scripts/measure/prefix-pairs.sh DATABASE_URL > pairs.txt
set -euo pipefail
psql "${1:?DATABASE_URL}" -X -Atq -v ON_ERROR_STOP=1 -F $'\t' \
  -c "select left(first_name, 2 + (random() > 0.5)::int), left(second_name, 2 + (random() > 0.5)::int)
      from users tablesample system (2) limit 20000" |
  python3 -c 'import sys, urllib.parse as u
for line in sys.stdin:
    f, s = line.rstrip("\n").split("\t")
    print("first_name=" + u.quote(f) + "&last_name=" + u.quote(s))'
