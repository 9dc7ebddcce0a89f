#!/usr/bin/env bash
# The celebrity-burst report (docs/lab/live.md, "A celebrity's burst"): an author with
# FOLLOWERS followers, CONNECTED of them on websockets, posts 30 times at once; right after, another
# author posts to one connected reader. Measured: that other post's latency and the burst's own
# deliveries, in two set-ups of one instance with RabbitMQ, same data:
#   by-follower   LIVE_BROADCAST_FOLLOWERS=never: the router reads every follower of each post
#                 and names them all (how every post was routed before broadcasts)
#   broadcast     the default (10,000): the celebrity's posts go to every instance, which finds
#                 its connected followers itself, on a queue of its own
# Loopback only. Needs the PostgreSQL server binaries and RabbitMQ on 127.0.0.1:5672; creates
# FOLLOWERS + 3 users if the database has fewer (`socialnet fake users`, a few minutes for 1M).
#   scripts/lab/live-burst.sh     # FOLLOWERS=1000000 CONNECTED=10000 DURATION=20 PG_PORT=5440
set -euo pipefail
cd "$(dirname "$0")/../.."
followers=${FOLLOWERS:-1000000}
connected=${CONNECTED:-10000}
duration=${DURATION:-20}
amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
. scripts/lib/server.sh
db_url=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}")
build_release
# CONNECTED sockets on one instance: room above the default cap.
export RUST_LOG=warn DATABASE_URL=$db_url LIVE_MAX_SOCKETS=$((connected + 100))
users=$(psql "$db_url" -X -Atq -c "select count(*) from users" 2>/dev/null || echo 0)
[ "$users" -ge $((followers + 3)) ] ||
  $bin fake users --count $((followers + 3 - users)) --seed 11 >/dev/null

trap stop_server EXIT
# Names of this run's own, removed by the broker a minute after the run.
broker_env=(AMQP_URL="$amqp_url" AMQP_PREFIX="lab-burst-$$" AMQP_QUEUE_EXPIRES_MS=60000)
bench() { # name
  $bin bench run --url http://127.0.0.1:8096 --scenarios ws-burst --connections "$connected" \
    --celebrity-followers "$followers" --warmup-secs 2 --duration-secs "$duration" \
    --server-pid "$server" --out results/lab-burst --name "$1" | tail -n 1 | xargs dirname
}

start_server 8096 /tmp/socialnet-lab-burst.log "${broker_env[@]}" LIVE_BROADCAST_FOLLOWERS=never
by_follower=$(bench by-follower)
stop_server

start_server 8096 /tmp/socialnet-lab-burst.log "${broker_env[@]}"
broadcast=$(bench broadcast)
stop_server

out=${LAB_DIR:-docs/lab}/live/burst
rm -rf $out
mkdir -p $out
cp -r "$by_follower" $out/by-follower
cp -r "$broadcast" $out/broadcast
$bin bench compare $out/by-follower $out/broadcast --out $out/compare
