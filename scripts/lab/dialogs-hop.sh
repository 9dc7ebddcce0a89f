#!/usr/bin/env bash
# The dialogs report (docs/lab/dialogs.md), the hop: the dialog service (`serve --service
# dialogs`, on 8097) loaded directly, then through the main service (8098), which forwards the
# old paths to it (DIALOGS_URL): the same `socialnet bench` dialog-send and dialog-list sweep,
# with the CPU of each process, so the hop's cost shows as latency and as CPU per request. On the
# data of scripts/lab/dialogs.sh (PostgreSQL on PG_PORT, 100,000 users, MESSAGES messages).
# Loopback only; a few minutes at the defaults.
#   scripts/lab/dialogs-hop.sh   # CONNECTIONS=1,10,100 DURATION=10 MESSAGES=1000000 PG_PORT=5440
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${CONNECTIONS:-1,10,100}
duration=${DURATION:-10}
messages=${MESSAGES:-1000000}
out=${LAB_DIR:-docs/lab}/dialogs
export RUST_LOG=warn
. scripts/lib/server.sh
. scripts/lib/dialogs-lab.sh
build_release
mkdir -p $out
dialogs=
trap 'stop_server; [ -z "$dialogs" ] || kill "$dialogs" 2>/dev/null || true' EXIT

db=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}" | sed 's#/socialnet$#/lab_dialogs#')
pg_data=${SOCIALNET_PG_ROOT:-/tmp/socialnet-pg}/${PG_PORT:-5440}
$bin migrate --database-url "$db" >/dev/null
load "$db" "$messages"

start_server 8097 /tmp/socialnet-lab-dialogs-service.log DATABASE_URL="$db" SERVICE=dialogs
dialogs=$server
server=
start_server 8098 /tmp/socialnet-lab-dialogs-main.log DATABASE_URL="$db" \
  DIALOGS_URL=http://127.0.0.1:8097

bench() { # name, port, pid of the process loaded, [more bench arguments]
  local name=$1 port=$2 pid=$3
  shift 3
  $bin bench run --url "http://127.0.0.1:$port" --database-url "$db" \
    --scenarios dialog-send,dialog-list --connections "$connections" --warmup-secs 2 \
    --duration-secs "$duration" --server-pid "$pid" \
    --node-pid "postgres=$(head -n 1 "$pg_data/postmaster.pid")" "$@" \
    --out results/lab-dialogs-hop --name "$name" | tail -n 1 | xargs dirname
}
direct=$(bench hop-direct 8097 "$dialogs")
forwarded=$(bench hop-forwarded 8098 "$server" --node-pid "dialog-service=$dialogs")
for run in hop-direct hop-forwarded; do rm -rf "${out:?}/$run"; done
cp -r "$direct" "$out/hop-direct"
cp -r "$forwarded" "$out/hop-forwarded"
rm -rf "$out/compare-hop"
$bin bench compare "$out/hop-direct" "$out/hop-forwarded" --out "$out/compare-hop"
