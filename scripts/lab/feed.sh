#!/usr/bin/env bash
# The feed report (docs/lab/feed.md): GET /post/feed computed by SQL against served from the Redis
# cache, same data, same readers, measured with `socialnet bench`. Loopback only.
# Needs `socialnet fake users` and `socialnet fake social` data in the instance (see the report).
#   scripts/lab/feed.sh      # DURATION=10 CONNECTIONS=1,10,100,1000 PORT=8093 PG_PORT=5440
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10}
connections=${CONNECTIONS:-1,10,100,1000}
port=${PORT:-8093}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
. scripts/lib/server.sh
db_url=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}")
build_release
follows=$(psql "$db_url" -X -Atq -c "select count(*) from friends" 2>/dev/null || echo 0)
[ "$follows" -gt 0 ] || { echo "no follows: run socialnet fake users and fake social first" >&2; exit 1; }

trap stop_server EXIT
start() { # extra env
  start_server "$port" /tmp/socialnet-lab-feed.log DATABASE_URL="$db_url" "$@"
}
bench() { # name
  $bin bench run --url "http://127.0.0.1:$port" --database-url "$db_url" --scenarios feed \
    --connections "$connections" --warmup-secs 2 --duration-secs "$duration" --server-pid "$server" \
    --out results/lab-feed --name "$1" | tail -n 1 | xargs dirname
}

start
sql=$(bench sql-feed)
stop_server
redis-cli -u "$redis_url" --scan --pattern 'lab:*' | xargs -r -n 1000 redis-cli -u "$redis_url" del >/dev/null
start REDIS_URL="$redis_url" REDIS_KEY_PREFIX=lab
cached=$(bench cached-feed)
stop_server

out=${LAB_DIR:-docs/lab}/feed
mkdir -p "$out"
rm -rf $out/sql-feed $out/cached-feed $out/compare
cp -r "$sql" $out/sql-feed
cp -r "$cached" $out/cached-feed
$bin bench compare $out/sql-feed $out/cached-feed --out $out/compare
