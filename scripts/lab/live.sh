#!/usr/bin/env bash
# The live-feed report (docs/lab/live.md): ws-fanout latency from the create call's response to
# each follower's socket, in five set-ups measured in one run, same data:
#   in-process           one instance, no broker: the instance fans out to its own sockets
#   broker               one instance, events through the outbox and RabbitMQ (127.0.0.1:5672);
#                        live posts routed on a topic exchange, 1,000 followers' keys per message
#   broker-direct        the same on a direct exchange
#   broker-per-follower  the same on a topic exchange, one message per follower
#   balanced             two instances behind HAProxy, as `broker`: sockets and posts spread
# Each server's peak resident memory (VmHWM) goes to docs/lab/live/memory.md.
# Loopback only. Needs the PostgreSQL server binaries, RabbitMQ on 127.0.0.1:5672 and haproxy.
#   scripts/lab/live.sh     # CONNECTIONS=1,10,100,1000,10000 DURATION=5 PG_PORT=5440
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${CONNECTIONS:-1,10,100,1000,10000}
duration=${DURATION:-5}
amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
. scripts/lib/server.sh
db_url=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}")
build_release
# The 10,000-follower step opens 10,000 sockets on one instance: room above the default cap.
export RUST_LOG=warn DATABASE_URL=$db_url LIVE_MAX_SOCKETS=20000
users=$(psql "$db_url" -X -Atq -c "select count(*) from users" 2>/dev/null || echo 0)
[ "$users" -gt 10000 ] || $bin fake users --count 20000 --seed 7 >/dev/null

stop() {
  stop_server
  scripts/stack/haproxy-local.sh stop >/dev/null 2>&1 || true
}
trap stop EXIT
serve() { # port, extra env…
  local port=$1
  shift
  start_server "$port" "/tmp/socialnet-lab-live-$port.log" "$@"
}
memory=$(mktemp)
bench() { # name, url, server pid
  local dir
  dir=$($bin bench run --url "$2" --scenarios ws-fanout --connections "$connections" \
    --warmup-secs 2 --duration-secs "$duration" --server-pid "$3" \
    --out results/lab-live --name "$1" | tail -n 1 | xargs dirname)
  echo "| $1 | $(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$3/status") |" >>"$memory"
  echo "$dir"
}
# Names of this run's own, removed by the broker a minute after the run.
broker_env=(AMQP_URL="$amqp_url" AMQP_PREFIX="lab-live-$$" AMQP_QUEUE_EXPIRES_MS=60000)

serve 8095
in_process=$(bench in-process http://127.0.0.1:8095 "$server")
stop

serve 8095 "${broker_env[@]}"
broker=$(bench broker http://127.0.0.1:8095 "$server")
stop

serve 8095 "${broker_env[@]}" LIVE_ROUTE_EXCHANGE=direct
direct=$(bench broker-direct http://127.0.0.1:8095 "$server")
stop

serve 8095 "${broker_env[@]}" LIVE_ROUTE_BATCH=1
per_follower=$(bench broker-per-follower http://127.0.0.1:8095 "$server")
stop

# Two instances behind HAProxy (the native twin of docker-compose.scale.yml).
env "${broker_env[@]}" PORT=8100 scripts/stack/haproxy-local.sh start 2 >/dev/null
for port in 8101 8102; do wait_ready "$port"; done
balanced=$(bench balanced http://127.0.0.1:8100 "$(cat /tmp/socialnet-lb/app1.pid)")
stop

out=${LAB_DIR:-docs/lab}/live
mkdir -p $out
rm -rf $out/in-process $out/broker $out/broker-direct $out/broker-per-follower $out/balanced $out/compare-*
cp -r "$in_process" $out/in-process
cp -r "$broker" $out/broker
cp -r "$direct" $out/broker-direct
cp -r "$per_follower" $out/broker-per-follower
cp -r "$balanced" $out/balanced
$bin bench compare $out/in-process $out/broker --out $out/compare-broker
$bin bench compare $out/broker-direct $out/broker --out $out/compare-exchange
$bin bench compare $out/broker-per-follower $out/broker --out $out/compare-batch
$bin bench compare $out/broker $out/balanced --out $out/compare-balanced
{
  echo "| set-up | server peak RSS (VmHWM) MB |"
  echo "|---|---:|"
  cat "$memory"
} >$out/memory.md
