#!/usr/bin/env bash
# Tarantool holding socialnet's dialogs on this machine, the native twin of the `tarantool`
# service of docker-compose.dialogs.yml: deploy/tarantool/dialogs.lua (the schema and the stored
# procedures), its write-ahead log and snapshots in its own folder.
#   scripts/stack/tarantool-local.sh start     # starts it if it is not running (again, if it
#                                              # runs an older dialogs.lua), waits until it
#                                              # answers, prints the TARANTOOL_URL for the server
#   scripts/stack/tarantool-local.sh kill      # SIGKILL, a crash: `start` replays its log
#   scripts/stack/tarantool-local.sh pid | stop | destroy
# TARANTOOL_PORT (default 3301) is its port on 127.0.0.1, TARANTOOL_PASSWORD the password of its
# user `socialnet` (default socialnet); data lives in $SOCIALNET_TARANTOOL_ROOT/tarantool-<port>
# (default /tmp/socialnet-tarantool). Needs tarantool (apt-get install tarantool).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
port=${TARANTOOL_PORT:-3301}
root=${SOCIALNET_TARANTOOL_ROOT:-/tmp/socialnet-tarantool}
dir="$root/tarantool-$port"
password=${TARANTOOL_PASSWORD:-socialnet}

running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

# Serves the procedures: dialogs.lua listens once its data is loaded and they are defined, and a
# call is the test of both.
answering() {
  timeout 5 tarantool -e "local c = require('net.box').connect('socialnet:$password@127.0.0.1:$port')
    os.exit(c:is_connected() and pcall(c.call, c, 'dialog_stats') and 0 or 1)" >/dev/null 2>&1
}

stop() {
  if running; then
    local pid
    pid=$(cat "$dir/pid")
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$dir/pid"
}

# The procedures are read when Tarantool starts: one running an older dialogs.lua is restarted.
script="$repo/deploy/tarantool/dialogs.lua"
version=$(sha256sum "$script" | cut -c1-16)

case "${1:-}" in
  start)
    mkdir -p "$dir"
    if running && [ "$(cat "$dir/version" 2>/dev/null)" != "$version" ]; then stop; fi
    if ! running && ! answering; then
      echo "$version" >"$dir/version"
      (cd "$dir" && TARANTOOL_LISTEN="127.0.0.1:$port" TARANTOOL_DIR="$dir" \
        TARANTOOL_PASSWORD="$password" exec tarantool "$script" \
        >>"$dir/tarantool.log" 2>&1) &
      echo $! >"$dir/pid"
    fi
    for _ in $(seq 1 150); do
      answering && break
      running || { echo "tarantool exited; see $dir/tarantool.log" >&2; tail -n 5 "$dir/tarantool.log" >&2; exit 1; }
      sleep 0.2
    done
    answering || { echo "tarantool does not answer on 127.0.0.1:$port; see $dir/tarantool.log" >&2; exit 1; }
    echo "socialnet:$password@127.0.0.1:$port"
    ;;
  kill)
    running && kill -9 "$(cat "$dir/pid")"
    rm -f "$dir/pid"
    ;;
  pid)
    cat "$dir/pid"
    ;;
  stop | destroy)
    stop
    if [ "$1" = destroy ]; then rm -rf "$dir"; fi
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
