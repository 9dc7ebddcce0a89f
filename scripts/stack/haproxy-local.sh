#!/usr/bin/env bash
# The scaled-out stack on this machine, the native twin of docker-compose.scale.yml:
# N socialnet instances on 127.0.0.1:PORT+1.. behind HAProxy on 127.0.0.1:PORT (default 8100),
# sharing DATABASE_URL (and with it the token secret the first instance keeps there, unless
# TOKEN_SECRET is set) and, when set, REDIS_URL and AMQP_URL (cross-instance live feed; with the
# dialogs split out, the unread counters the dialog service keeps from its events).
#   scripts/stack/haproxy-local.sh start [N]    # default 2; prints the balancer's URL
#   scripts/stack/haproxy-local.sh kill-instance I [SIGNAL]   # default KILL: an instance dies
#   scripts/stack/haproxy-local.sh start-instance I           # starts it again
#   scripts/stack/haproxy-local.sh reload       # new HAProxy workers; established connections finish
#   scripts/stack/haproxy-local.sh stop
# DIALOG_SERVICE=M (default 0) splits the dialogs out, as docker-compose.split.yml does: M dialog
# service instances (`serve --service dialogs`, instance numbers 51…50+M, on PORT+51…) behind a
# backend of their own, to which HAProxy routes /dialog/ and /v2/dialogs/ itself; the other
# instances forward the dialog paths that reach them (DIALOGS_URL) through HAProxy's internal
# frontend on 127.0.0.1:PORT+50. `start-instance 51` starts a dialog instance again.
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
dialog_service=${DIALOG_SERVICE:-0}
# What each kind of instance is told: the API ones where the dialog service is, the dialog
# service what it is (and no DIALOGS_URL: it would forward to itself).
api_env=()
[ "$dialog_service" -gt 0 ] && api_env=("DIALOGS_URL=http://127.0.0.1:$((port + 50))")
dialog_env=(SERVICE=dialogs DIALOGS_URL=)
instance_env() { # i: the variables of instance i
  if [ "$1" -gt 50 ]; then echo "${dialog_env[@]}"; else echo "${api_env[@]}"; fi
}

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
    # No instance to take it (all down): the API's own error shape, and when to retry.
    http-error status 503 content-type application/json hdr Retry-After 1 string "{\\"message\\":\\"no instance is available; retry later\\",\\"request_id\\":\\"\\",\\"code\\":503}"

frontend api
    bind 127.0.0.1:$port
CFG
      if [ "$dialog_service" -gt 0 ]; then
        cat <<CFG
    acl dialog_paths path_beg /dialog/ /v2/dialogs/
    use_backend dialogs if dialog_paths
CFG
      fi
      cat <<CFG
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
      if [ "$dialog_service" -gt 0 ]; then
        cat <<CFG

# The API instances' way to the dialog service (their DIALOGS_URL).
frontend dialogs_internal
    bind 127.0.0.1:$((port + 50))
    default_backend dialogs

backend dialogs
    balance hdr(Authorization)
    hash-type consistent
    http-request disable-l7-retry if METH_POST
    option httpchk GET /ready
    http-check expect status 200
    http-response set-header x-served-by %s
    default-server check inter 1s fall 1 rise 2
CFG
        for i in $(seq 51 $((50 + dialog_service))); do
          echo "    server app$i 127.0.0.1:$((port + i))"
        done
      fi
    } >"$state/haproxy.cfg"
    # The first instance creates and migrates the database; the others then find it ready. The
    # API instances first: the first of them keeps the token secret the dialog service reads.
    # shellcheck disable=SC2046 # instance_env gives words on purpose
    for i in $(seq 1 "$n"); do start_instance "$i" $(instance_env "$i"); done
    # shellcheck disable=SC2046
    for i in $(seq 51 $((50 + dialog_service))); do start_instance "$i" $(instance_env "$i"); done
    haproxy -D -f "$state/haproxy.cfg"
    echo "http://127.0.0.1:$port"
    ;;
  kill-instance)
    kill_instance "${2:?which instance}" "${3:-KILL}"
    ;;
  start-instance)
    # shellcheck disable=SC2046
    start_instance "${2:?which instance}" $(instance_env "$2")
    ;;
  reload)
    kill -USR2 "$(cat "$state/haproxy.pid")"
    ;;
  stop)
    [ -f "$state/haproxy.pid" ] && kill "$(cat "$state/haproxy.pid")" 2>/dev/null || true
    stop_instances
    ;;
  *)
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
