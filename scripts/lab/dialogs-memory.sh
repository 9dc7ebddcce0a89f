#!/usr/bin/env bash
# The dialogs report (docs/lab/dialogs.md), its store comparison: the data of
# scripts/lab/dialogs.sh (plain PostgreSQL on PG_PORT: 100,000 users, 1,000,000 messages with one
# hot user writing 10 % of them, then 10,000,000) copied into Tarantool
# (scripts/stack/tarantool-local.sh on TARANTOOL_PORT) and, when a Citus coordinator answers on
# CITUS_PORT (scripts/stack/citus-local.sh start 2), loaded into a Citus database too; then the
# same `socialnet bench` sweep with each store: dialog-send and dialog-list at the first size,
# dialog-list at the next, and dialog-send again with Tarantool flushing its log as PostgreSQL
# does (wal_mode fsync). With what each store takes in memory or on disk, and how long Tarantool
# takes to answer again after SIGKILL: replaying its log, and from a fresh snapshot. Loopback
# only; about 18 minutes at the defaults with Citus.
#   scripts/lab/dialogs-memory.sh   # CONNECTIONS=1,10,100,1000 DURATION=10 SIZES="1 10"
#                                   # (millions of messages) PG_PORT=5440 TARANTOOL_PORT=3311
#                                   # CITUS_PORT=5450
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${CONNECTIONS:-1,10,100,1000}
duration=${DURATION:-10}
sizes=${SIZES:-1 10}
citus_port=${CITUS_PORT:-5450}
out=${LAB_DIR:-docs/lab}/dialogs
export TARANTOOL_PORT=${TARANTOOL_PORT:-3311}
export SOCIALNET_TARANTOOL_ROOT=${LAB_TARANTOOL_ROOT:-/tmp/socialnet-lab-tarantool}
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

# The Citus leg, when its cluster is up.
citus=
if psql "postgres://postgres@127.0.0.1:$citus_port/postgres" -X -Atq -c "select count(*) from pg_dist_node" >/dev/null 2>&1; then
  citus=postgres://postgres@127.0.0.1:$citus_port/lab_dialogs_stores
  # Made once; later runs top its data up like the plain database's.
  if ! psql "$citus" -X -Atq -c "select 1 from dialog_messages limit 1" >/dev/null 2>&1; then
    citus=$(fresh_citus "$citus_port" lab_dialogs_stores)
    $bin migrate --database-url "$citus" >/dev/null 2>&1
    # shellcheck disable=SC2046 # one argument per worker
    $bin shards --database-url "$citus" add-worker $(citus_workers "$citus_port") >/dev/null 2>&1
  fi
else
  echo "no Citus coordinator on 127.0.0.1:$citus_port: comparing PostgreSQL and Tarantool only" >&2
fi
citus_pids() { # --node-pid arguments for every Citus node
  local data
  for data in "${CITUS_DIR:-/tmp/socialnet-citus}"/*/; do
    echo "--node-pid citus-$(basename "$data")=$(head -n 1 "$data/postmaster.pid")"
  done
}

stats() { # Tarantool URL: messages, dialogs, tuple bytes, index bytes, arena bytes
  tarantool -e "local s = require('net.box').connect('$1'):call('dialog_stats')
                print(table.concat(s, ' ')) os.exit(0)"
}
snapshot() { # Tarantool URL: takes a snapshot, prints the seconds it took
  tarantool -e "print(require('net.box').connect('$1'):call('dialog_snapshot', {}, {timeout = 600})) os.exit(0)"
}
restart() { # SIGKILL, start again: prints the seconds until Tarantool answers
  local started
  $tarantool_stack kill
  started=$(date +%s.%N)
  $tarantool_stack start >/dev/null
  echo "$(date +%s.%N) - $started" | bc
}
bench() { # name, scenarios, database URL, [more arguments]
  local name=$1 scenarios=$2 database=$3
  shift 3
  $bin bench run --url http://127.0.0.1:8098 --database-url "$database" --scenarios "$scenarios" \
    --connections "$connections" --warmup-secs 2 --duration-secs "$duration" \
    --server-pid "$server" "$@" \
    --out results/lab-dialogs-memory --name "$name" | tail -n 1 | xargs dirname
}
plain_pids() {
  echo "--node-pid postgres=$(head -n 1 "$pg_data/postmaster.pid") --node-pid tarantool=$($tarantool_stack pid)"
}

# One row per run and size, added to what earlier runs of this version wrote.
summary=$out/memory.md
grep -q snapshot "$summary" 2>/dev/null || {
  echo "| messages | PostgreSQL: dialog tables and indexes on disk | Tarantool: tuples | indexes | arena in use | per million messages | Tarantool back after SIGKILL, replaying its log | snapshot taken in | back after SIGKILL, from the snapshot |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$summary"
# FIRST=no: dialog-list only from the first size on (the sends were measured at a smaller one).
first=${FIRST:-yes}
for size in $sizes; do
  load "$plain" $((size * unit))
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
  # Back after SIGKILL: replaying the log written since the load, then from a fresh snapshot.
  back=$(restart)
  took=$(snapshot "$tt")
  back_snapshot=$(restart)
  mb() { echo "$1 / 1048576" | bc; }
  printf '| %s | %s MB | %s MB | %s MB | %s MB | %s MB | %.1f s | %.1f s | %.1f s |\n' "$messages" \
    "$(mb "$on_disk")" "$(mb "$tuples")" "$(mb "$indexes")" "$(mb "$arena")" \
    "$(echo "$arena * 1000000 / $messages / 1048576" | bc)" "$back" "$took" "$back_snapshot" >>"$summary"
  scenarios=$([ "$first" = yes ] && echo dialog-send,dialog-list || echo dialog-list)
  for store in postgres tarantool; do
    start_server 8098 /tmp/socialnet-lab-dialogs-memory.log DATABASE_URL="$plain" \
      DIALOG_STORE="$store" TARANTOOL_URL="$tt"
    # shellcheck disable=SC2046 # one argument each
    dir=$(bench "$store-${size}m" "$scenarios" "$plain" $(plain_pids))
    stop_server
    rm -rf "${out:?}/$store-${size}m"
    cp -r "$dir" "$out/$store-${size}m"
  done
  rm -rf "$out/compare-memory-${size}m"
  $bin bench compare "$out/postgres-${size}m" "$out/tarantool-${size}m" --out "$out/compare-memory-${size}m" >/dev/null
  if [ -n "$citus" ]; then
    # The same data on Citus: loaded (seeded) as on the plain PostgreSQL, topped up to the
    # same number of messages.
    load "$citus" "$(psql "$plain" -X -Atq -c "select count(*) from dialog_messages")"
    start_server 8098 /tmp/socialnet-lab-dialogs-memory.log DATABASE_URL="$citus"
    # shellcheck disable=SC2046 # one argument each
    dir=$(bench "citus-stores-${size}m" "$scenarios" "$citus" $(citus_pids))
    stop_server
    rm -rf "${out:?}/citus-stores-${size}m" "$out/compare-stores-citus-${size}m"
    cp -r "$dir" "$out/citus-stores-${size}m"
    $bin bench compare "$out/postgres-${size}m" "$out/citus-stores-${size}m" --out "$out/compare-stores-citus-${size}m" >/dev/null
  fi
  if [ "$first" = yes ]; then
    # The same durability as PostgreSQL's: Tarantool flushing its log to disk before a send
    # returns (wal_mode fsync), as PostgreSQL's commit does; 'write' (above) leaves it to the OS.
    $tarantool_stack stop
    TARANTOOL_WAL_MODE=fsync $tarantool_stack start >/dev/null
    start_server 8098 /tmp/socialnet-lab-dialogs-memory.log DATABASE_URL="$plain" \
      DIALOG_STORE=tarantool TARANTOOL_URL="$tt"
    # shellcheck disable=SC2046 # one argument each
    dir=$(bench "tarantool-fsync-${size}m" dialog-send "$plain" $(plain_pids))
    stop_server
    rm -rf "${out:?}/tarantool-fsync-${size}m" "$out/compare-fsync-${size}m"
    cp -r "$dir" "$out/tarantool-fsync-${size}m"
    $bin bench compare "$out/postgres-${size}m" "$out/tarantool-fsync-${size}m" --out "$out/compare-fsync-${size}m" >/dev/null
  fi
  first=no
done
cat "$summary"
