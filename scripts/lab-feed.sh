#!/usr/bin/env bash
# The feed report (docs/lab/feed.md): GET /post/feed computed by SQL against served from the Redis
# cache, same data, same readers, measured with `socialnet bench`. Loopback only.
# Needs `socialnet fake users` and `socialnet fake social` data in the instance (see the report).
#   scripts/lab-feed.sh      # DURATION=10 CONNECTIONS=1,10,100,1000 PORT=8093 PG_PORT=5440
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10}
connections=${CONNECTIONS:-1,10,100,1000}
port=${PORT:-8093}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
db_url=$(scripts/pg-instance.sh start "${PG_PORT:-5440}")
cargo build --release --quiet
bin=target/release/socialnet
follows=$(psql "$db_url" -X -Atq -c "select count(*) from friends" 2>/dev/null || echo 0)
[ "$follows" -gt 0 ] || { echo "no follows: run socialnet fake users and fake social first" >&2; exit 1; }

server=
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; }
trap stop EXIT
start() { # extra env
  env TOKEN_SECRET=lab RUST_LOG=warn BIND=127.0.0.1:$port DATABASE_URL=$db_url "$@" $bin serve > /tmp/socialnet-lab-feed.log 2>&1 &
  server=$!
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
}
bench() { # name
  TOKEN_SECRET=lab $bin bench run --url "http://127.0.0.1:$port" --database-url "$db_url" --scenarios feed \
    --connections "$connections" --warmup-secs 2 --duration-secs "$duration" --server-pid "$server" \
    --out results/lab-feed --name "$1" | tail -n 1 | xargs dirname
}

start
sql=$(bench sql-feed)
stop
redis-cli -u "$redis_url" --scan --pattern 'lab:*' | xargs -r -n 1000 redis-cli -u "$redis_url" del >/dev/null
start REDIS_URL="$redis_url" REDIS_KEY_PREFIX=lab
cached=$(bench cached-feed)
stop

mkdir -p docs/lab/feed
rm -rf docs/lab/feed/sql-feed docs/lab/feed/cached-feed docs/lab/feed/compare
cp -r "$sql" docs/lab/feed/sql-feed
cp -r "$cached" docs/lab/feed/cached-feed
$bin bench compare docs/lab/feed/sql-feed docs/lab/feed/cached-feed --out docs/lab/feed/compare
