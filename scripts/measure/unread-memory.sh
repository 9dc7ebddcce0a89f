#!/usr/bin/env bash
# What the unread counters cost Redis, for two builds on the same data (a before/after
# comparison): the dialogs lab's data (PostgreSQL on PG_PORT, DIALOG_USERS users and MESSAGES
# messages, loaded by the first binary; nothing read, so every message is unread), then for each
# binary its migrations and `socialnet counters rebuild` into an empty Redis of the script's own.
# Prints, per binary, Redis' used_memory for the counters: in all, per unread message, per dialog
# side with a message sent to it, and per million unread messages; then the same once one user
# has flooded another with FLOOD more messages (default 100,000), none read.
#   scripts/measure/unread-memory.sh BEFORE_BINARY AFTER_BINARY   # MESSAGES=1000000 PG_PORT=5440
# REDIS_PORT (default 6392). Loopback only; a few minutes at the defaults (most of it the load).
set -euo pipefail
cd "$(dirname "$0")/../.."
before=${1:?the binary before}
after=${2:?the binary after}
messages=${MESSAGES:-1000000}
redis_port=${REDIS_PORT:-6392}
export RUST_LOG=warn
bin=$before
. scripts/lib/dialogs-lab.sh

db=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}" | sed 's#/socialnet$#/measure_unread#')
psql "${db%/*}/postgres" -X -q -c "drop database if exists measure_unread with (force)"
"$before" migrate --database-url "$db" >/dev/null
load "$db" "$messages" >/dev/null

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  >/tmp/socialnet-measure-unread-redis.log 2>&1 &
redis=$!
trap 'kill "$redis" 2>/dev/null || true' EXIT
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
used() { redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }

measure() { # what the data is
  for binary in "$before" "$after"; do
    redis-cli -p "$redis_port" flushall >/dev/null
    "$binary" migrate --database-url "$db" >/dev/null
    start=$(used)
    rebuilt=$(DATABASE_URL="$db" REDIS_URL="redis://127.0.0.1:$redis_port" REDIS_KEY_PREFIX=measure \
      "$binary" counters rebuild)
    end=$(used)
    sides=$(echo "$rebuilt" | sed -n 's/.*: \([0-9]*\) dialog sides.*/\1/p')
    unread=$(echo "$rebuilt" | sed -n 's/.* \([0-9]*\) unread messages.*/\1/p')
    python3 -c "import sys; b, n, s, name, what = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]; \
print(f'{name}, {what}: {n} unread messages on {s} dialog sides: {b / 1e6:.1f} MB, {b / n:.1f} bytes per unread message, {b / s:.1f} per side, {b / n:.1f} MB per million unread')" \
      "$((end - start))" "$unread" "$sides" "$binary" "$1"
  done
}
measure "$messages messages"
# One user floods another: FLOOD messages more in one dialog, through the send call of the day.
flood=${FLOOD:-100000}
psql "$db" -X -q -o /dev/null -c "select store_dialog_message(7, 1, 2, 1, 2, 'm') from generate_series(1, $flood)"
measure "and $flood more in one dialog"
