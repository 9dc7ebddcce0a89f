#!/usr/bin/env bash
# The dialogs report (docs/lab/dialogs.md), unread counters: what they cost Redis, how long a
# rebuild takes, and what counting costs a send. On the data of scripts/lab/dialogs.sh
# (PostgreSQL on PG_PORT, 100,000 users, MESSAGES messages, none read yet: every one is unread).
#   1. `socialnet counters rebuild` into a Redis of the lab's own (REDIS_PORT, empty at first):
#      its time, and Redis' memory before and after, per unread message.
#   2. the dialog-send sweep of `socialnet bench` with the counters off (no REDIS_URL), kept in
#      process (REDIS_URL), and kept through the outbox and RabbitMQ (REDIS_URL and AMQP_URL).
# Loopback only; a few minutes at the defaults.
#   scripts/lab/dialogs-unread.sh   # CONNECTIONS=1,10,100 DURATION=10 MESSAGES=1000000 PG_PORT=5440
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${CONNECTIONS:-1,10,100}
duration=${DURATION:-10}
messages=${MESSAGES:-1000000}
redis_port=${REDIS_PORT:-6391}
amqp=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
out=${LAB_DIR:-docs/lab}/dialogs
export RUST_LOG=warn
. scripts/lib/server.sh
. scripts/lib/dialogs-lab.sh
build_release
mkdir -p $out
redis=
trap 'stop_server; [ -z "$redis" ] || kill "$redis" 2>/dev/null || true' EXIT

db=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}" | sed 's#/socialnet$#/lab_dialogs#')
pg_data=${SOCIALNET_PG_ROOT:-/tmp/socialnet-pg}/${PG_PORT:-5440}
$bin migrate --database-url "$db" >/dev/null
load "$db" "$messages"

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  >/tmp/socialnet-lab-unread-redis.log 2>&1 &
redis=$!
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
redis_url=redis://127.0.0.1:$redis_port
used() { redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }

before=$(used)
rebuilt=$(DATABASE_URL="$db" REDIS_URL="$redis_url" REDIS_KEY_PREFIX=lab $bin counters rebuild)
after=$(used)
unread=$(echo "$rebuilt" | sed -n 's/.* \([0-9]*\) unread messages.*/\1/p')
keys=$(redis-cli -p "$redis_port" dbsize)
{
  echo "messages stored: $(psql "$db" -X -Atq -c 'select count(*) from dialog_messages')"
  echo "$rebuilt"
  echo "redis keys: $keys; used_memory before: $before, after: $after"
  python3 -c "import sys; b, a, n = map(int, sys.argv[1:]); \
print(f'bytes per unread message: {(a - b) / n:.1f}; MB per million: {(a - b) / n:.0f}')" \
    "$before" "$after" "$unread"
} | tee "$out/unread-rebuild.txt"

bench() { # name, [VAR=value…] for the server
  local name=$1
  shift
  start_server 8096 "/tmp/socialnet-lab-unread-$name.log" DATABASE_URL="$db" "$@"
  $bin bench run --url http://127.0.0.1:8096 --database-url "$db" \
    --scenarios dialog-send --connections "$connections" --warmup-secs 2 \
    --duration-secs "$duration" --server-pid "$server" \
    --node-pid "postgres=$(head -n 1 "$pg_data/postmaster.pid")" \
    --out results/lab-dialogs-unread --name "$name" | tail -n 1 | xargs dirname
  stop_server
}
off=$(bench unread-off)
in_process=$(bench unread-in-process REDIS_URL="$redis_url" REDIS_KEY_PREFIX=lab)
outbox=$(bench unread-outbox REDIS_URL="$redis_url" REDIS_KEY_PREFIX=lab AMQP_URL="$amqp" \
  AMQP_PREFIX=lab-unread AMQP_QUEUE_EXPIRES_MS=60000)
for run in unread-off unread-in-process unread-outbox compare-unread-in-process compare-unread-outbox; do
  rm -rf "${out:?}/$run"
done
cp -r "$off" "$out/unread-off"
cp -r "$in_process" "$out/unread-in-process"
cp -r "$outbox" "$out/unread-outbox"
$bin bench compare "$out/unread-off" "$out/unread-in-process" --out "$out/compare-unread-in-process"
$bin bench compare "$out/unread-off" "$out/unread-outbox" --out "$out/compare-unread-outbox"
