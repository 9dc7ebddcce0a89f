#!/usr/bin/env bash
# The scaled-out stack on this machine, the native twin of docker-compose.scale.yml:
# N socialnet instances on 127.0.0.1:PORT+1.. behind HAProxy on 127.0.0.1:PORT (default 8100),
# sharing DATABASE_URL (and with it the token secret the first instance keeps there, unless
# TOKEN_SECRET is set) and, when set, REDIS_URL and AMQP_URL (cross-instance live feed).
#   scripts/stack/haproxy-local.sh start [N]    # default 2; prints the balancer's URL
#   scripts/stack/haproxy-local.sh kill-instance I [SIGNAL]   # default KILL: an instance dies
#   scripts/stack/haproxy-local.sh start-instance I           # starts it again
#   scripts/stack/haproxy-local.sh reload       # new HAProxy workers; established connections finish
#   scripts/stack/haproxy-local.sh stop
# What HAProxy does with a dying instance (the same lines as deploy/haproxy/haproxy.cfg): a
# request whose connection fails, or that gets an empty answer or none in time, is sent again,
# to another instance (retry-on, redispatch), unless it is a POST: one that may have been applied
# is answered 502, never sent twice. The health check (GET /ready every second) takes the
# instance out after one failure. A token keeps reaching one instance (its read-your-writes
# notes); requests without one are spread round robin.
# Needs haproxy (apt-get install haproxy) and a build; SOCIALNET_BIN names the binary (default
# target/release/socialnet), SOCIALNET_LB_DIR the state folder (default /tmp/socialnet-lb).
set -euo pipefail
cd "$(dirname "$0")/../.."
state=${SOCIALNET_LB_DIR:-/tmp/socialnet-lb}
port=${PORT:-8100}
bin=${SOCIALNET_BIN:-target/release/socialnet}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/socialnet}
export RUST_LOG=${RUST_LOG:-info}

. scripts/lib/instances.sh

case "${1:-}" in
  start)
    n=${2:-2}
    mkdir -p "$state"
    {
      cat <<CFG
global
    master-worker
    hard-stop-after 60s
    # Each connection costs two descriptors; stay under this machine's 20,000.
    maxconn 9000
    pidfile $state/haproxy.pid
    # What HAProxy thinks of each instance, for the lab (scripts/lab/balancers.sh).
    stats socket $state/haproxy.sock mode 600 level user

defaults
    mode http
    option http-server-close
    option forwardfor
    option redispatch
    retries 2
    retry-on conn-failure empty-response response-timeout
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h

frontend api
    bind 127.0.0.1:$port
    default_backend socialnet

backend socialnet
    balance hdr(Authorization)
    hash-type consistent
    http-request disable-l7-retry if METH_POST
    option httpchk GET /ready
    http-check expect status 200
    http-response set-header x-served-by %s
    default-server check inter 1s fall 1 rise 2
CFG
      for i in $(seq 1 "$n"); do echo "    server app$i 127.0.0.1:$((port + i))"; done
    } >"$state/haproxy.cfg"
    # The first instance creates and migrates the database; the others then find it ready.
    for i in $(seq 1 "$n"); do start_instance "$i"; done
    haproxy -D -f "$state/haproxy.cfg"
    echo "http://127.0.0.1:$port"
    ;;
  kill-instance)
    kill_instance "${2:?which instance}" "${3:-KILL}"
    ;;
  start-instance)
    start_instance "${2:?which instance}"
    ;;
  reload)
    kill -USR2 "$(cat "$state/haproxy.pid")"
    ;;
  stop)
    [ -f "$state/haproxy.pid" ] && kill "$(cat "$state/haproxy.pid")" 2>/dev/null || true
    stop_instances
    ;;
  *)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
