#!/usr/bin/env bash
# The replicas report (docs/lab/replicas.md), its failover part: the primary killed with SIGKILL
# under CONNECTIONS connections of registrations, posts, messages and profile reads (a quarter
# each), with synchronous replication (pg_auto_failover's default: a commit waits for the
# standby) and asynchronous, each two ways: killed at once ("kill"), and killed CUT seconds after
# its WAL stopped reaching the standby ("cut": the network to it failed first).
# `socialnet bench outage` then looks for every acknowledged write on the new primary. The stack is scripts/stack/failover-local.sh with two nodes; the killed
# node is started again between the runs and rejoins as a standby. Loopback only; about 3
# minutes at the defaults.
#   scripts/lab/failover.sh   # DURATION=30 KILL_AFTER=10 CUT=2 CONNECTIONS=100 USERS=10000
#                             # PORT=8097 FAILOVER_PORT=5480 MODES="sync async" WAYS="kill cut"
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-30}
kill_after=${KILL_AFTER:-10}
connections=${CONNECTIONS:-100}
users=${USERS:-10000}
port=${PORT:-8097}
modes=${MODES:-sync async}
ways=${WAYS:-kill cut}
cut=${CUT:-2}
export FAILOVER_PORT=${FAILOVER_PORT:-5480}
stack=scripts/stack/failover-local.sh
out=${LAB_DIR:-docs/lab}/replicas
. scripts/lib/server.sh
build_release
mapfile -t urls < <($stack start 2)
url=${urls[0]}
trap 'stop_server; $stack replication sync >/dev/null || true' EXIT

run_server() {
  start_server "$port" /tmp/socialnet-lab-failover.log DATABASE_URL="$url" \
    DATABASE_READ_URLS="${urls[1]},${urls[2]}"
}

# The server creates and migrates the database; the users are generated once.
run_server
have=$(psql "${urls[1]}" -X -Atq -c "select count(*) from users" 2>/dev/null || echo 0)
[ "$have" -ge "$users" ] || $bin fake users --database-url "$url" --count $((users - have)) --seed 42
stop_server

for mode in $modes; do
  for way in $ways; do
    $stack replication "$mode"
    primary=$($stack primary)
    case "$way" in
      kill) event="$stack kill-node $primary" ;;
      cut) event="$stack cut-node $primary && sleep $cut && $stack kill-node $primary" ;;
    esac
    run_server
    report=$($bin bench outage --url "http://127.0.0.1:$port" --database-url "$url" \
      --connections "$connections" --duration-secs "$duration" \
      --event "$event" --event-after-secs "$kill_after" \
      --out results/lab-failover --name "failover-$mode-$way")
    stop_server
    $stack start-node "$primary"
    rm -rf "$out/failover-$mode-$way"
    cp -r "$(dirname "$report")" "$out/failover-$mode-$way"
  done
done
