#!/usr/bin/env bash
# The dialogs report (docs/lab/dialogs.md), its in-memory part: the data of scripts/lab/dialogs.sh
# (plain PostgreSQL on PG_PORT: 100,000 users, 1,000,000 messages with one hot user writing 10 %
# of them, then 10,000,000) copied into Tarantool (scripts/stack/tarantool-local.sh on
# TARANTOOL_PORT), and the same `socialnet bench` sweep with DIALOG_STORE=postgres and
# DIALOG_STORE=tarantool: dialog-send and dialog-list at the first size, dialog-list at the
# next, and dialog-send again with Tarantool flushing its log as PostgreSQL does (wal_mode
# fsync); with what each store takes in memory or on disk, and how long Tarantool takes to
# answer again after SIGKILL. Loopback only; about 25 minutes at the defaults.
#   scripts/lab/dialogs-memory.sh   # CONNECTIONS=1,10,100,1000 DURATION=10 SIZES="1 10"
#                                   # (millions of messages) PG_PORT=5440 TARANTOOL_PORT=3311
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${CONNECTIONS:-1,10,100,1000}
duration=${DURATION:-10}
sizes=${SIZES:-1 10}
out=docs/lab/dialogs
export TARANTOOL_PORT=${TARANTOOL_PORT:-3311}
export SOCIALNET_TARANTOOL_ROOT=/tmp/socialnet-lab-tarantool
export TARANTOOL_MEMORY_MB=${TARANTOOL_MEMORY_MB:-6144}
export RUST_LOG=warn
. scripts/lib/server.sh
. scripts/lib/dialogs-lab.sh
build_release
mkdir -p $out
tarantool_stack=scripts/stack/tarantool-local.sh
trap 'stop_server; $tarantool_stack stop' EXIT

plain=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}" | sed 's#/socialnet$#/lab_dialogs#')
pg_data=${SOCIALNET_PG_ROOT:-/tmp/socialnet-pg}/${PG_PORT:-5440}
$bin migrate --database-url "$plain" >/dev/null

stats() { # Tarantool URL: messages, dialogs, tuple bytes, index bytes, arena bytes
  tarantool -e "local s = require('net.box').connect('$1'):call('dialog_stats')
                print(table.concat(s, ' ')) os.exit(0)"
}
bench() { # name, scenarios
  $bin bench run --url http://127.0.0.1:8098 --database-url "$plain" --scenarios "$2" \
    --connections "$connections" --warmup-secs 2 --duration-secs "$duration" \
    --server-pid "$server" --node-pid "postgres=$(head -n 1 "$pg_data/postmaster.pid")" \
    --node-pid "tarantool=$($tarantool_stack pid)" \
    --out results/lab-dialogs-memory --name "$1" | tail -n 1 | xargs dirname
}

# One row per run and size, added to what earlier runs wrote.
summary=$out/memory.md
[ -f "$summary" ] || {
  echo "| messages | PostgreSQL: dialog tables and indexes on disk | Tarantool: tuples | indexes | arena in use | per million messages | Tarantool back after SIGKILL (replaying its log) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
} >"$summary"
# FIRST=no: dialog-list only from the first size on (the sends were measured at a smaller one).
first=${FIRST:-yes}
for size in $sizes; do
  load "$plain" $((size * 1000000))
  tt=$($tarantool_stack start)
  # Copied afresh unless Tarantool already holds as many messages as PostgreSQL.
  in_pg=$(psql "$plain" -X -Atq -c "select count(*) from dialog_messages")
  read -r messages _ < <(stats "$tt")
  if [ "$messages" != "$in_pg" ]; then
    $tarantool_stack destroy
    tt=$($tarantool_stack start)
    $bin fake copy-dialogs --database-url "$plain" --tarantool-url "$tt"
  fi
  read -r messages _ tuples indexes arena < <(stats "$tt")
  on_disk=$(psql "$plain" -X -Atq -c "select pg_total_relation_size('dialog_messages') + pg_total_relation_size('dialogs')")
  $tarantool_stack kill
  started=$(date +%s.%N)
  $tarantool_stack start >/dev/null
  back=$(echo "$(date +%s.%N) - $started" | bc)
  mb() { echo "$1 / 1048576" | bc; }
  printf '| %s | %s MB | %s MB | %s MB | %s MB | %s MB | %.1f s |\n' "$messages" "$(mb "$on_disk")" \
    "$(mb "$tuples")" "$(mb "$indexes")" "$(mb "$arena")" \
    "$(echo "$arena * 1000000 / $messages / 1048576" | bc)" "$back" >>"$summary"
  scenarios=$([ "$first" = yes ] && echo dialog-send,dialog-list || echo dialog-list)
  for store in postgres tarantool; do
    start_server 8098 /tmp/socialnet-lab-dialogs-memory.log DATABASE_URL="$plain" \
      DIALOG_STORE="$store" TARANTOOL_URL="$tt"
    dir=$(bench "$store-${size}m" "$scenarios")
    stop_server
    rm -rf "${out:?}/$store-${size}m"
    cp -r "$dir" "$out/$store-${size}m"
  done
  rm -rf "$out/compare-memory-${size}m"
  $bin bench compare "$out/postgres-${size}m" "$out/tarantool-${size}m" --out "$out/compare-memory-${size}m" >/dev/null
  if [ "$first" = yes ]; then
    # The same durability as PostgreSQL's: Tarantool flushing its log to disk before a send
    # returns (wal_mode fsync), as PostgreSQL's commit does; 'write' (above) leaves it to the OS.
    $tarantool_stack stop
    TARANTOOL_WAL_MODE=fsync $tarantool_stack start >/dev/null
    start_server 8098 /tmp/socialnet-lab-dialogs-memory.log DATABASE_URL="$plain" \
      DIALOG_STORE=tarantool TARANTOOL_URL="$tt"
    dir=$(bench "tarantool-fsync-${size}m" dialog-send)
    stop_server
    rm -rf "${out:?}/tarantool-fsync-${size}m" "$out/compare-fsync-${size}m"
    cp -r "$dir" "$out/tarantool-fsync-${size}m"
    $bin bench compare "$out/postgres-${size}m" "$out/tarantool-fsync-${size}m" --out "$out/compare-fsync-${size}m" >/dev/null
  fi
  first=no
done
cat "$summary"
