# Sourced by the measurement and lab scripts: build and start a release server of this checkout on
# a loopback port, wait until it answers /ready, stop it. Run from the repository's root.
#   build_release                       # cargo build --release, unless SOCIALNET_BIN names
#                                       # another binary to run (a before/after comparison)
#   start_server PORT LOG [VAR=value…]  # `socialnet serve` on 127.0.0.1:PORT with RUST_LOG
#                                       # (default warn), RATE_LIMITS (default off: the lab
#                                       # measures the server, not its limiter, and one load
#                                       # generator is one address) and the given variables;
#                                       # sets $server to
#                                       # its pid; fails, showing the log's tail, if it is not
#                                       # ready within READY_WAIT seconds. The token secret is the
#                                       # one the server keeps in its database, which
#                                       # `socialnet bench` reads to mint its tokens.
#   stop_server                         # stops the server started last (harmless if none)
#   wait_ready PORT [SECONDS]           # waits for /ready of a server started otherwise
# SERVER_WRAPPER runs the binary under another program (e.g. valgrind) when set.

bin=${SOCIALNET_BIN:-target/release/socialnet}
server=

build_release() {
  [ -n "${SOCIALNET_BIN:-}" ] || cargo build --release --quiet
}

wait_ready() { # port, [seconds]
  local port=$1 tries=$((${2:-${READY_WAIT:-30}} * 5))
  for _ in $(seq 1 "$tries"); do
    curl -fs "http://127.0.0.1:$port/ready" >/dev/null && return 0
    sleep 0.2
  done
  return 1
}

start_server() { # port, log, [VAR=value…]
  local port=$1 log=$2
  shift 2
  # shellcheck disable=SC2086 # SERVER_WRAPPER is a command line of its own
  env RUST_LOG="${RUST_LOG:-warn}" RATE_LIMITS="${RATE_LIMITS:-off}" BIND="127.0.0.1:$port" "$@" \
    ${SERVER_WRAPPER:-} "$bin" serve >"$log" 2>&1 &
  server=$!
  if ! wait_ready "$port"; then
    echo "the server on 127.0.0.1:$port did not become ready; the end of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
}

stop_server() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    server=
  fi
  return 0
}
