#!/usr/bin/env bash
# The replicas report (docs/lab/replicas.md), its balancer part: two release instances behind
# HAProxy, then behind nginx (scripts/stack/haproxy-local.sh, nginx-local.sh), CONNECTIONS
# connections of profile reads (half of them), posts and messages, and instance 1 killed with
# SIGKILL after KILL_AFTER seconds. `socialnet bench outage` counts the failed requests of each
# kind and looks for every acknowledged write. How long each balancer took to notice the dead
# instance: for HAProxy, its own view (the stats socket, asked every 20 ms) from the kill until
# it marks the instance DOWN; for nginx (passive checks), the first request it tried on the dead
# instance and passed on to the other (its x-served-by lists both), and when it tried again.
# Loopback only; about a minute at the defaults.
#   scripts/lab/balancers.sh   # DURATION=20 KILL_AFTER=5 CONNECTIONS=100 USERS=10000
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-20}
kill_after=${KILL_AFTER:-5}
connections=${CONNECTIONS:-100}
users=${USERS:-10000}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/socialnet_lab_balancers}
export RATE_LIMITS=off RUST_LOG=warn
. scripts/lib/server.sh
build_release
export SOCIALNET_BIN=$bin
out=${LAB_DIR:-docs/lab}/replicas
work=$(mktemp -d)
poller=
cleanup() {
  [ -z "$poller" ] || kill "$poller" 2>/dev/null || true
  for balancer in haproxy nginx; do
    SOCIALNET_LB_DIR="$work/$balancer" scripts/stack/$balancer-local.sh stop 2>/dev/null || true
  done
}
trap cleanup EXIT

# HAProxy's status of app1, with the time it changed, until killed. Run in the background, the
# subshell becomes python (exec), so that $! is the poller itself.
poll_haproxy() { # socket, file
  exec python3 - "$1" "$2" <<'PY'
import socket, sys, time
sock, out = sys.argv[1], sys.argv[2]
last = None
while True:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        for line in data.decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "socialnet" and fields[1] == "app1":
                if fields[17] != last:
                    last = fields[17]
                    with open(out, "a") as f:
                        f.write(f"{time.time():.3f} {last}\n")
    except OSError:
        pass
    time.sleep(0.02)
PY
}

summary="$out/balancers-notice.md"
{
  echo "| balancer | killed at (s) | noticed after (s) | how |"
  echo "|---|---:|---:|---|"
} >"$summary"
for balancer in haproxy nginx; do
  stack=scripts/stack/$balancer-local.sh
  state="$work/$balancer"
  export SOCIALNET_LB_DIR=$state
  case "$balancer" in haproxy) export PORT=8100 ;; nginx) export PORT=8200 ;; esac
  url=$($stack start 2)
  have=$(psql "$DATABASE_URL" -X -Atq -c "select count(*) from users")
  [ "$have" -ge "$users" ] || $bin fake users --count $((users - have)) --seed 42
  if [ "$balancer" = haproxy ]; then
    poll_haproxy "$state/haproxy.sock" "$work/haproxy-status" &
    poller=$!
  fi
  report=$($bin bench outage --url "$url" --connections "$connections" \
    --kinds read,read,post,send --duration-secs "$duration" \
    --event "date +%s.%N >$work/killed-at; $stack kill-instance 1" --event-after-secs "$kill_after" \
    --out results/lab-balancers --name "instance-kill-$balancer")
  if [ -n "$poller" ]; then kill "$poller"; poller=; fi
  $stack stop
  rm -rf "$out/instance-kill-$balancer"
  cp -r "$(dirname "$report")" "$out/instance-kill-$balancer"
  killed=$(cat "$work/killed-at")
  if [ "$balancer" = haproxy ]; then
    down=$(awk '$2 ~ /^DOWN/ { print $1; exit }' "$work/haproxy-status")
    printf '| HAProxy | %s | %.3f | its health check marked app1 DOWN |\n' "$kill_after" \
      "$(echo "$down - $killed" | bc)" >>"$summary"
  else
    python3 - "$out/instance-kill-nginx/outage.json" "$((PORT + 1))" >>"$summary" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
dead = run["served_by"].get(f"127.0.0.1:{sys.argv[2]}", {})
first, last = dead.get("first_tried_s"), dead.get("last_tried_s")
print(f"| nginx | {run['event_at_s']:.0f} | {first:.3f} | the first request tried on it and passed on; "
      f"{dead.get('tried_and_passed', 0)} such, the last at {last:.2f} s (it probes again after fail_timeout) |")
PY
  fi
done
unset SOCIALNET_LB_DIR PORT
cat "$summary"
