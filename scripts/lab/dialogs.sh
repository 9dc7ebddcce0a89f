#!/usr/bin/env bash
# The dialogs report (docs/lab/dialogs.md), measured with `socialnet bench` in one run:
#   1. plain PostgreSQL (127.0.0.1:5440): 100,000 users, 1,000,000 messages, one hot user writing
#      10 % of them: dialog-send and dialog-list over the connection sweep; the key-choice table
#      (`fake dialog-shards`); then 9,000,000 more messages and dialog-list again.
#   2. Citus (coordinator at $CITUS_PORT, default 5450, with two workers on the next ports, from
#      `scripts/stack/citus-local.sh start 2`): the same data and sweep.
#   3. Rebalance: a Citus database on one worker; dialog-send runs while the second worker is
#      added and the shards rebalanced; the time taken and the errors clients saw.
# Loopback only. Needs the PostgreSQL server binaries and, for 2 and 3, a running local Citus
# cluster (skipped with a message otherwise).
#   scripts/lab/dialogs.sh    # CONNECTIONS=1,10,100,1000 DURATION=10 PG_PORT=5440 CITUS_PORT=5450
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${CONNECTIONS:-1,10,100,1000}
duration=${DURATION:-10}
citus_port=${CITUS_PORT:-5450}
out=${LAB_DIR:-docs/lab}/dialogs
. scripts/lib/server.sh
. scripts/lib/dialogs-lab.sh
build_release
export RUST_LOG=warn
mkdir -p $out

stop() { stop_server; }
trap stop EXIT
serve() { # database URL
  start_server 8097 /tmp/socialnet-lab-dialogs.log DATABASE_URL="$1"
}
bench() { # name, database URL, scenarios, [connections], [duration]
  $bin bench run --url http://127.0.0.1:8097 --database-url "$2" --scenarios "$3" \
    --connections "${4:-$connections}" --warmup-secs 2 --duration-secs "${5:-$duration}" \
    --server-pid "$server" --out results/lab-dialogs --name "$1" | tail -n 1 | xargs dirname
}
keep() { # run folder, name
  rm -rf "${out:?}/$2"
  cp -r "$1" "$out/$2"
}
# 1. Plain PostgreSQL.
plain=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}" | sed 's#/socialnet$#/lab_dialogs#')
$bin migrate --database-url "$plain" >/dev/null
load "$plain" "$unit"
$bin fake dialog-shards --database-url "$plain" --shards 32 >$out/key-choice.md
serve "$plain"
keep "$(bench plain-1m "$plain" dialog-send,dialog-list)" plain-1m
stop
load "$plain" $((10 * unit))
serve "$plain"
keep "$(bench plain-10m "$plain" dialog-list)" plain-10m
stop
$bin bench compare $out/plain-1m $out/plain-10m --out $out/compare-size

# 2 and 3 need the local Citus cluster.
if ! psql "postgres://postgres@127.0.0.1:$citus_port/postgres" -X -Atq -c "select count(*) from pg_dist_node" >/dev/null 2>&1; then
  echo "no Citus coordinator on 127.0.0.1:$citus_port: skipping the Citus runs (scripts/stack/citus-local.sh start 2)" >&2
  exit 0
fi
workers=$(citus_workers "$citus_port")
citus=$(fresh_citus "$citus_port" lab_dialogs)
$bin migrate --database-url "$citus" >/dev/null 2>&1
# shellcheck disable=SC2086 # one argument per worker
$bin shards --database-url "$citus" add-worker $workers 2>/dev/null
load "$citus" "$unit"
$bin shards --database-url "$citus" status >$out/citus-status.txt 2>/dev/null
serve "$citus"
keep "$(bench citus-1m "$citus" dialog-send,dialog-list)" citus-1m
stop
$bin bench compare $out/plain-1m $out/citus-1m --out $out/compare-citus

# 3. Rebalance under writes: 32 shards on the first worker, then the second joins.
rebalance=$(fresh_citus "$citus_port" lab_rebalance)
$bin migrate --database-url "$rebalance" >/dev/null 2>&1
first=$(echo "$workers" | head -n 1)
second=$(echo "$workers" | sed -n 2p)
$bin shards --database-url "$rebalance" add-worker "$first" >/dev/null 2>&1
load "$rebalance" $((unit / 5))
serve "$rebalance"
bench rebalance "$rebalance" dialog-send 10 120 >/tmp/socialnet-lab-rebalance.dir &
load_pid=$!
sleep 15
started=$(date +%s.%N)
$bin shards --database-url "$rebalance" add-worker "$second" 2>/dev/null
$bin shards --database-url "$rebalance" rebalance 2>&1 | tee $out/rebalance-progress.txt
finished=$(date +%s.%N)
wait $load_pid
keep "$(cat /tmp/socialnet-lab-rebalance.dir)" rebalance
stop
$bin shards --database-url "$rebalance" status >$out/rebalance-status.txt 2>/dev/null
awk "BEGIN { printf \"rebalance took %.1f s\\n\", $finished - $started }" | tee $out/rebalance-time.txt
