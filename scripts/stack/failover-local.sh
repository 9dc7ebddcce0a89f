#!/usr/bin/env bash
# PostgreSQL with automatic failover on this machine, the native twin of
# docker-compose.failover.yml: a pg_auto_failover monitor and N data nodes (a primary and N-1
# standbys, synchronous: a commit waits for a standby while one is up), each node's pg_autoctl
# keeper promoting a standby by itself when the monitor finds the primary gone.
#   scripts/stack/failover-local.sh start [N]   # default 2 nodes; creates them if needed, runs them,
#                                              # and prints the URL the server uses (every node,
#                                              # target_session_attrs=read-write: whichever is the
#                                              # primary), then each node's own URL
#   scripts/stack/failover-local.sh kill-node I   # SIGKILL a node's keeper and PostgreSQL: the machine dies
#   scripts/stack/failover-local.sh cut-node I    # SIGSTOP node I's WAL senders: its standbys get
#                                              # nothing more, as if the network to them had
#                                              # failed, while it goes on answering (kill-node ends it)
#   scripts/stack/failover-local.sh start-node I  # runs it again: it rejoins as a standby
#   scripts/stack/failover-local.sh primary       # which node accepts writes now (its number)
#   scripts/stack/failover-local.sh replication sync|async   # every node in the commit quorum
#                                              # (the default) or none: asynchronous, and a
#                                              # failover may lose the last acknowledged writes
#   scripts/stack/failover-local.sh state | stop | destroy
# FAILOVER_PORT is the monitor's port (default 5470); node I listens on FAILOVER_PORT + I. The
# monitor runs with deploy/pg_auto_failover/monitor.conf (a node gone after 3 s without an
# answer, defaults 20 s), so a failover takes a few seconds here. Data lives in
# $SOCIALNET_PG_ROOT/failover-<port> (default /tmp/socialnet-pg). Needs pg_auto_failover
# (apt-get install postgresql-15-auto-failover); PG_BIN names the server binaries.
set -euo pipefail
action=${1:-}
base=${FAILOVER_PORT:-5470}
root=${SOCIALNET_PG_ROOT:-/tmp/socialnet-pg}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
stack="$root/failover-$base"
repo=$(cd "$(dirname "$0")/../.." && pwd)
monitor_url="postgres://autoctl_node@127.0.0.1:$base/pg_auto_failover?sslmode=disable"

usage() {
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# pg_autoctl as the postgres user, with its configuration and state inside the stack. setpriv
# runs it in place (no process in between), so a service's pid is pg_autoctl's own.
autoctl() {
  local run=(env XDG_CONFIG_HOME="$stack/config" XDG_DATA_HOME="$stack/data" PG_CONFIG="$bin/pg_config"
    pg_autoctl "$@")
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups "${run[@]}"
  else
    "${run[@]}"
  fi
}

dir_of() { [ "$1" = 0 ] && echo "$stack/monitor" || echo "$stack/node$1"; }
port_of() { echo $((base + $1)); }
node_url() { echo "postgres://postgres@127.0.0.1:$(port_of "$1")/socialnet"; }

# The nodes that exist, 1..N.
nodes() {
  local i=1
  while [ -f "$(dir_of "$i")/PG_VERSION" ] || [ -f "$stack/node$i.created" ]; do
    echo "$i"
    i=$((i + 1))
  done
}

# The processes of one pg_autoctl service: its keeper, PostgreSQL and their children.
tree() {
  local pid=$1 child
  echo "$pid"
  for child in $(ps -o pid= --ppid "$pid"); do tree "$child"; done
}

running() { [ -f "$stack/run$1.pid" ] && kill -0 "$(cat "$stack/run$1.pid")" 2>/dev/null; }

run_service() { # i: the keeper of node i (0: the monitor), in the background
  running "$1" && return 0
  autoctl run --pgdata "$(dir_of "$1")" >>"$stack/service$1.log" 2>&1 &
  echo $! >"$stack/run$1.pid"
}

sql() { # port, sql
  psql -X -Atq -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2" 2>/dev/null
}

wait_until() { # seconds, command…
  local seconds=$1
  shift
  for _ in $(seq 1 $((seconds * 5))); do "$@" && return 0; sleep 0.2; done
  return 1
}

monitor_up() { sql "$base" "select 1" >/dev/null; }
# The node's state, from the monitor, once the node has reached the state assigned to it.
node_state() {
  psql -X -Atq -h 127.0.0.1 -p "$base" -U postgres -d pg_auto_failover \
    -c "select reportedstate from pgautofailover.node
        where nodeport = $(port_of "$1") and reportedstate = goalstate" 2>/dev/null
}
# Settled in a serving state, and answering (the monitor's last report of a dead node is stale).
serving() {
  case "$(node_state "$1")" in
    single | primary | wait_primary | secondary) sql "$(port_of "$1")" "select 1" >/dev/null ;;
    *) return 1 ;;
  esac
}

create_monitor() {
  autoctl create monitor --pgdata "$(dir_of 0)" --pgport "$base" --hostname 127.0.0.1 \
    --auth trust --no-ssl --pgctl "$bin/pg_ctl" >>"$stack/service0.log" 2>&1
  cat "$repo/deploy/pg_auto_failover/monitor.conf" >>"$(dir_of 0)/postgresql.conf"
}

create_node() { # i
  local i=$1
  touch "$stack/node$i.created"
  autoctl create postgres --pgdata "$(dir_of "$i")" --pgport "$(port_of "$i")" \
    --hostname 127.0.0.1 --auth trust --no-ssl --pgctl "$bin/pg_ctl" --dbname socialnet \
    --name "node$i" --monitor "$monitor_url" --run >>"$stack/service$i.log" 2>&1 &
  echo $! >"$stack/run$i.pid"
  # A standby's base backup waits for a checkpoint on the primary: ask for one until it is in.
  local _
  for _ in $(seq 1 300); do
    serving "$i" && break
    for other in $(nodes); do
      [ "$other" = "$i" ] || sql "$(port_of "$other")" "checkpoint" >/dev/null || true
    done
    sleep 0.2
  done
  serving "$i" || { echo "node $i did not join; see $stack/service$i.log" >&2; exit 1; }
}

case "$action" in
  start)
    count=${2:-2}
    [[ "$count" =~ ^[1-9][0-9]*$ ]] || usage
    mkdir -p "$stack"
    [ "$(id -u)" = 0 ] && chown postgres: "$root" "$stack"
    [ -f "$(dir_of 0)/PG_VERSION" ] || create_monitor
    run_service 0
    wait_until 30 monitor_up || { echo "the monitor did not start; see $stack/service0.log" >&2; exit 1; }
    for i in $(seq 1 "$count"); do
      if [ -f "$stack/node$i.created" ]; then run_service "$i"; else create_node "$i"; fi
    done
    for i in $(seq 1 "$count"); do
      wait_until 60 serving "$i" || { echo "node $i is not serving; see $stack/service$i.log" >&2; exit 1; }
    done
    hosts=""
    for i in $(nodes); do hosts="$hosts${hosts:+,}127.0.0.1:$(port_of "$i")"; done
    echo "postgres://postgres@$hosts/socialnet?target_session_attrs=read-write"
    for i in $(nodes); do node_url "$i"; done
    ;;
  kill-node)
    i=${2:?which node}
    running "$i" || { echo "node $i is not running" >&2; exit 1; }
    # shellcheck disable=SC2046 # one pid per word
    kill -9 $(tree "$(cat "$stack/run$i.pid")") 2>/dev/null || true
    rm -f "$stack/run$i.pid"
    ;;
  cut-node)
    i=${2:?which node}
    senders=$(sql "$(port_of "$i")" "select pid from pg_stat_replication")
    [ -n "$senders" ] || { echo "node $i sends WAL to nobody" >&2; exit 1; }
    # shellcheck disable=SC2086 # one pid per word
    kill -STOP $senders
    ;;
  start-node)
    run_service "${2:?which node}"
    wait_until 60 serving "$2" || { echo "node $2 did not rejoin; see $stack/service$2.log" >&2; exit 1; }
    ;;
  primary)
    # Asked of the nodes themselves: the monitor's last report of a dead node is stale.
    for i in $(nodes); do
      [ "$(sql "$(port_of "$i")" "select pg_is_in_recovery() or current_setting('transaction_read_only')::bool")" = f ] && echo "$i"
    done
    true
    ;;
  replication)
    case "${2:-}" in
      sync) quorum=true ;;
      async) quorum=false ;;
      *) usage ;;
    esac
    # Through the monitor's own function: `pg_autoctl set node replication-quorum` (1.6) sets it
    # too, then often fails reading the nodes back ("invalid byte sequence"), exiting non-zero.
    # The function may meet a keeper's report in a deadlock: it is tried again.
    set_quorum() { # node
      psql -X -Atq -h 127.0.0.1 -p "$base" -U postgres -d pg_auto_failover -c \
        "select pgautofailover.set_node_replication_quorum('default', 'node$1', $quorum)" \
        >>"$stack/service0.log" 2>&1
    }
    for i in $(nodes); do
      wait_until 30 set_quorum "$i" || { echo "the monitor refused; see $stack/service0.log" >&2; exit 1; }
    done
    # The primary's keeper applies it: wait until synchronous_standby_names says so.
    synchronous() {
      local p names
      p=$("$0" primary | head -n 1)
      [ -n "$p" ] || return 1
      names=$(sql "$(port_of "$p")" "show synchronous_standby_names")
      if [ "$quorum" = true ]; then [ -n "$names" ]; else [ -z "$names" ]; fi
    }
    wait_until 30 synchronous || { echo "replication is not $2 yet; see $stack/service*.log" >&2; exit 1; }
    ;;
  state)
    autoctl show state --pgdata "$(dir_of 0)"
    ;;
  stop | destroy)
    # Each keeper stops its PostgreSQL on the way out (a fast shutdown); the monitor last.
    for i in $(nodes | sort -rn) 0; do
      if running "$i"; then
        pid=$(cat "$stack/run$i.pid")
        autoctl stop --pgdata "$(dir_of "$i")" >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
        wait_until 30 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 $(tree "$pid") 2>/dev/null || true
        rm -f "$stack/run$i.pid"
      fi
    done
    if [ "$action" = destroy ]; then rm -rf "$stack"; fi
    ;;
  *)
    usage
    ;;
esac
