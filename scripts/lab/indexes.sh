#!/usr/bin/env bash
# The indexes report (docs/lab/indexes.md): /user/search with and without its index, measured with
# `socialnet bench` on 1,000,000 generated users, then compared. Loopback only; about 3 minutes.
#   scripts/lab/indexes.sh       # DURATION=10 CONNECTIONS=1,10,100,1000 PORT=8091 PG_PORT=5440
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10}
connections=${CONNECTIONS:-1,10,100,1000}
port=${PORT:-8091}
users=${USERS:-1000000}
. scripts/lib/server.sh
db_url=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}")
build_release
have=$(psql "$db_url" -X -Atq -c "select count(*) from users" 2>/dev/null || echo 0)
[ "$have" -ge "$users" ] || $bin fake users --database-url "$db_url" --count $((users - have)) --seed 42

trap 'stop_server; $bin search-index create --database-url "$db_url" >/dev/null' EXIT
start_server "$port" /tmp/socialnet-lab-indexes.log DATABASE_URL="$db_url"

bench() { # name
  $bin bench run --url "http://127.0.0.1:$port" --database-url "$db_url" --scenarios user-search \
    --connections "$connections" --warmup-secs 2 --duration-secs "$duration" --server-pid $server \
    --out results/lab-indexes --name "$1" | tail -n 1 | xargs dirname
}
$bin search-index create --database-url "$db_url"
with=$(bench with-index)
$bin search-index drop --database-url "$db_url"
without=$(bench without-index)
$bin search-index create --database-url "$db_url"

out=${LAB_DIR:-docs/lab}/indexes
mkdir -p "$out"
rm -rf $out/with-index $out/without-index $out/compare
cp -r "$with" $out/with-index
cp -r "$without" $out/without-index
$bin bench compare $out/without-index $out/with-index --out $out/compare
