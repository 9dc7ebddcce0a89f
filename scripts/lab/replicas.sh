#!/usr/bin/env bash
# The replicas report (docs/lab/replicas.md), its read part: /user/get and /user/search with 0, 1
# and 2 streaming replicas behind one server, same data, measured with `socialnet bench`, with
# the CPU each PostgreSQL node spends per request. Loopback only; about 6 minutes at the defaults.
#   scripts/lab/replicas.sh     # DURATION=10 CONNECTIONS=1,10,100,1000 USERS=1000000 PORT=8095
#                               # REPLICAS_PORT=5460 (the stack of scripts/stack/replicas-local.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10}
connections=${CONNECTIONS:-1,10,100,1000}
port=${PORT:-8095}
users=${USERS:-1000000}
export REPLICAS_PORT=${REPLICAS_PORT:-5460}
. scripts/lib/server.sh
. scripts/lib/replicas-lab.sh
replicas_lab_stack "$users"

trap stop_server EXIT
run() { # name, [DATABASE_READ_URLS=…]
  local name=$1
  shift
  start_server "$port" /tmp/socialnet-lab-replicas.log DATABASE_URL="$primary" "$@"
  $bin bench run --url "http://127.0.0.1:$port" --database-url "$primary" \
    --scenarios user-get,user-search --connections "$connections" --warmup-secs 2 \
    --duration-secs "$duration" --server-pid "$server" "${nodes[@]}" \
    --out results/lab-replicas --name "$name" | tail -n 1 | xargs dirname
  stop_server
}
none=$(run no-replicas)
one=$(run one-replica DATABASE_READ_URLS="${urls[1]}")
two=$(run two-replicas DATABASE_READ_URLS="${urls[1]},${urls[2]}")

out=${LAB_DIR:-docs/lab}/replicas
mkdir -p "$out"
rm -rf "$out"/no-replicas "$out"/one-replica "$out"/two-replicas "$out"/compare-*
cp -r "$none" "$out"/no-replicas
cp -r "$one" "$out"/one-replica
cp -r "$two" "$out"/two-replicas
$bin bench compare "$out"/no-replicas "$out"/one-replica --out "$out"/compare-one
$bin bench compare "$out"/no-replicas "$out"/two-replicas --out "$out"/compare-two
