# Sourced by the balancer stacks (scripts/stack/haproxy-local.sh, nginx-local.sh): socialnet
# instances on 127.0.0.1:$port+I, each with its pid and log in $state. The caller sets $state,
# $port and $bin (the binary).
#   start_instance I [VAR=value…]   # `serve` on $port+I with the given variables; waits until
#                                   # it answers /ready (30 s)
#   kill_instance I [SIG]   # default KILL: the instance dies without a goodbye
#   stop_instances          # SIGTERM to every instance started, then forget their pids

start_instance() { # i, [VAR=value…]
  local i=$1
  shift
  env "$@" BIND=127.0.0.1:$((port + i)) "$bin" serve >>"$state/app$i.log" 2>&1 &
  echo $! >"$state/app$i.pid"
  for _ in $(seq 1 150); do
    curl -fs "http://127.0.0.1:$((port + i))/ready" >/dev/null && return 0
    sleep 0.2
  done
  echo "instance $i did not become ready; see $state/app$i.log" >&2
  return 1
}

kill_instance() { # i, [signal]
  kill -s "${2:-KILL}" "$(cat "$state/app$1.pid")"
}

stop_instances() {
  local pid
  for pid in "$state"/app*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  rm -f "$state"/app*.pid
}
