#!/usr/bin/env bash
# The scaled-out stack on this machine, the native twin of docker-compose.scale.yml:
# N socialnet instances on 127.0.0.1:8101.. behind HAProxy on 127.0.0.1:$PORT (default 8100),
# sharing DATABASE_URL (and with it the token secret the first instance keeps there, unless
# TOKEN_SECRET is set) and, when set, REDIS_URL and AMQP_URL (cross-instance live feed).
#   scripts/stack/haproxy-local.sh start [N]    # default 2
#   scripts/stack/haproxy-local.sh reload       # new HAProxy workers; established connections finish
#   scripts/stack/haproxy-local.sh stop
# Needs haproxy (apt-get install haproxy) and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
state=${SOCIALNET_LB_DIR:-/tmp/socialnet-lb}
port=${PORT:-8100}
n=${2:-2}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/socialnet}
export RUST_LOG=${RUST_LOG:-info}

case "${1:-}" in
  start)
    mkdir -p "$state"
    {
      cat <<CFG
global
    master-worker
    hard-stop-after 60s
    # Each connection costs two descriptors; stay under this machine's 20,000.
    maxconn 9000
    pidfile $state/haproxy.pid

defaults
    mode http
    option http-server-close
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h

frontend api
    bind 127.0.0.1:$port
    default_backend socialnet

backend socialnet
    balance leastconn
    option httpchk GET /ready
    http-check expect status 200
    http-response set-header x-served-by %s
    default-server check inter 1s fall 2 rise 2
CFG
      for i in $(seq 1 "$n"); do echo "    server app$i 127.0.0.1:$((8100 + i))"; done
    } > "$state/haproxy.cfg"
    for i in $(seq 1 "$n"); do
      BIND=127.0.0.1:$((8100 + i)) target/release/socialnet serve > "$state/app$i.log" 2>&1 &
      echo $! > "$state/app$i.pid"
    done
    haproxy -D -f "$state/haproxy.cfg"
    echo "http://127.0.0.1:$port  ($n instances; logs in $state)"
    ;;
  reload)
    kill -USR2 "$(cat "$state/haproxy.pid")"
    ;;
  stop)
    [ -f "$state/haproxy.pid" ] && kill "$(cat "$state/haproxy.pid")" 2>/dev/null || true
    for pid in "$state"/app*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
    rm -f "$state"/*.pid
    ;;
  *)
    echo "usage: $0 start [N] | reload | stop" >&2
    exit 2
    ;;
esac
