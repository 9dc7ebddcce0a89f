#!/usr/bin/env bash
# The replicas report (docs/lab/replicas.md), its write part: POST /post/create against a primary
# with two streaming replicas, asynchronous, then synchronous to the first of them (FIRST 1) and
# to any one (ANY 1), measured with `socialnet bench`, while the replicas' replay lag is sampled
# from pg_stat_replication every 0.2 s. Loopback only; about 3 minutes at the defaults.
#   scripts/lab/replicas-sync.sh   # DURATION=10 CONNECTIONS=1,10,100 PORT=8096 REPLICAS_PORT=5460
# Needs the users of scripts/lab/replicas.sh (it makes them if they are missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10}
connections=${CONNECTIONS:-1,10,100}
port=${PORT:-8096}
users=${USERS:-1000000}
export REPLICAS_PORT=${REPLICAS_PORT:-5460}
. scripts/lib/server.sh
. scripts/lib/replicas-lab.sh
replicas_lab_stack "$users"
out=${LAB_DIR:-docs/lab}/replicas
mkdir -p "$out"
sampler=
trap 'stop_server; [ -z "$sampler" ] || kill "$sampler" 2>/dev/null; scripts/stack/replicas-local.sh start 2 --sync async >/dev/null' EXIT

# Every 0.2 s, the largest replay lag of the replicas, in ms (PostgreSQL's own measure: from a
# WAL flush on the primary to its replay on the replica; empty while nothing is written).
sample_lag() { # file
  while true; do
    psql "$primary" -X -Atq -c "select coalesce(round(max(extract(epoch from replay_lag) * 1000)::numeric, 2), 0)
                                from pg_stat_replication" >>"$1" 2>/dev/null || true
    sleep 0.2
  done
}

start_server "$port" /tmp/socialnet-lab-replicas-sync.log DATABASE_URL="$primary"
summary="$out/sync-lag.md"
{
  echo "| replication | lag samples | lag p50 ms | lag p99 ms | lag max ms |"
  echo "|---|---:|---:|---:|---:|"
} >"$summary"
for mode in async first quorum; do
  scripts/stack/replicas-local.sh start 2 --sync "$mode" >/dev/null
  lag=$(mktemp)
  sample_lag "$lag" &
  sampler=$!
  dir=$($bin bench run --url "http://127.0.0.1:$port" --database-url "$primary" \
    --scenarios post-create --connections "$connections" --warmup-secs 2 \
    --duration-secs "$duration" --server-pid "$server" "${nodes[@]}" \
    --out results/lab-replicas-sync --name "writes-$mode" | tail -n 1 | xargs dirname)
  kill "$sampler"
  sampler=
  rm -rf "$out/writes-$mode"
  cp -r "$dir" "$out/writes-$mode"
  sort -n "$lag" | awk -v mode="$mode" '{ v[NR] = $1 } END {
    p50 = v[int(NR * 0.50) + (NR > 0)]; p99 = v[int(NR * 0.99) + (NR > 0)]
    printf "| %s | %d | %.2f | %.2f | %.2f |\n", mode, NR, p50, p99, v[NR] }' >>"$summary"
  rm -f "$lag"
done
stop_server
rm -rf "$out"/compare-sync-first "$out"/compare-sync-quorum
$bin bench compare "$out"/writes-async "$out"/writes-first --out "$out"/compare-sync-first
$bin bench compare "$out"/writes-async "$out"/writes-quorum --out "$out"/compare-sync-quorum
cat "$summary"
