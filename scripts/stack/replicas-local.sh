#!/usr/bin/env bash
# A PostgreSQL primary and N streaming replicas on loopback ports, the native twin of
# docker-compose.replicas.yml.
#   scripts/stack/replicas-local.sh start N [--sync async|first|quorum]
#       initdb the primary and pg_basebackup the replicas if they do not exist yet, start every
#       node, and print their URLs, the primary's first. --sync sets the primary's
#       synchronous_standby_names: async (none, the default), first (FIRST 1 of the replicas) or
#       quorum (ANY 1 of them); it can be changed by running start again.
#   scripts/stack/replicas-local.sh stop-node I [fast|immediate]   # 0 is the primary, 1..N replicas
#   scripts/stack/replicas-local.sh start-node I
#   scripts/stack/replicas-local.sh urls | status
#   scripts/stack/replicas-local.sh pid I            # the postmaster's pid of node I (for CPU)
#   scripts/stack/replicas-local.sh stop | destroy   # stop every node; destroy also deletes the data
# REPLICAS_PORT is the primary's port (default 5460); replica I listens on REPLICAS_PORT + I.
# Each replica streams through a physical replication slot of its own (replica1, replica2, ...), so
# the primary keeps the WAL a stopped replica still needs, and runs with hot_standby_feedback, so
# the primary does not vacuum away rows that its reads still see. Data lives in
# $SOCIALNET_PG_ROOT/replicas-<port>/node<I> (default /tmp/socialnet-pg); PG_BIN names the server
# binaries (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail
action=${1:-}
base=${REPLICAS_PORT:-5460}
root=${SOCIALNET_PG_ROOT:-/tmp/socialnet-pg}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
stack="$root/replicas-$base"

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

node_dir() { echo "$stack/node$1"; }
node_port() { echo $((base + $1)); }
url() { echo "postgres://postgres@127.0.0.1:$(node_port "$1")/socialnet"; }

# The nodes that exist, in order: 0, then the replicas.
nodes() {
  local i=0
  while [ -f "$(node_dir "$i")/PG_VERSION" ]; do
    echo "$i"
    i=$((i + 1))
  done
}

running() { as_postgres "$bin/pg_ctl" -D "$(node_dir "$1")" status >/dev/null 2>&1; }

start_node() {
  local dir
  dir=$(node_dir "$1")
  [ -f "$dir/PG_VERSION" ] || { echo "node $1 does not exist" >&2; exit 1; }
  if ! running "$1"; then
    as_postgres "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
  fi
}

stop_node() {
  local mode=${2:-fast}
  case "$mode" in fast | immediate) ;; *) usage ;; esac
  if running "$1"; then
    as_postgres "$bin/pg_ctl" -D "$(node_dir "$1")" -m "$mode" -w stop >/dev/null
  fi
}

psql_primary() {
  as_postgres "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(node_port 0)" -U postgres \
    -d postgres "$@"
}

init_primary() {
  local dir
  dir=$(node_dir 0)
  as_postgres "$bin/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 >/dev/null
  # initdb's default pg_hba.conf already trusts replication connections from loopback.
  cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $(node_port 0)
unix_socket_directories = '$stack'
cluster_name = 'primary'
max_connections = 200
shared_buffers = 256MB
random_page_cost = 1.1
wal_level = replica
max_wal_senders = 16
max_replication_slots = 16
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on
CONF
}

init_replica() {
  local i=$1 dir
  dir=$(node_dir "$i")
  as_postgres "$bin/psql" -X -q -h 127.0.0.1 -p "$(node_port 0)" -U postgres -d postgres \
    -c "select pg_drop_replication_slot('replica$i') from pg_replication_slots where slot_name = 'replica$i'" \
    >/dev/null
  as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$(node_port 0)" -U postgres -D "$dir" \
    -X stream -R -C -S "replica$i" --checkpoint=fast
  # Later lines win over the primary's settings that the base backup copied. cluster_name is
  # the name the replica gives the primary (its application_name), the one that
  # synchronous_standby_names lists.
  cat >>"$dir/postgresql.conf" <<CONF
port = $(node_port "$i")
unix_socket_directories = '$stack'
cluster_name = 'replica$i'
CONF
}

set_sync() {
  local count=$1 mode=$2 names="" i
  for i in $(seq 1 "$count"); do names="$names${names:+, }replica$i"; done
  local value
  case "$mode" in
    async) value="" ;;
    first) value="FIRST 1 ($names)" ;;
    quorum) value="ANY 1 ($names)" ;;
    *) usage ;;
  esac
  psql_primary -c "alter system set synchronous_standby_names = '$value'" \
    -c "select pg_reload_conf()" >/dev/null
}

case "$action" in
  start)
    count=${2:?how many replicas}
    [[ "$count" =~ ^[0-9]+$ ]] || usage
    sync=async
    if [ "${3:-}" = --sync ]; then sync=${4:?async, first or quorum}; fi
    mkdir -p "$stack"
    [ "$(id -u)" = 0 ] && chown postgres: "$root" "$stack"
    [ -f "$(node_dir 0)/PG_VERSION" ] || init_primary
    start_node 0
    for i in $(seq 1 "$count"); do
      [ -f "$(node_dir "$i")/PG_VERSION" ] || init_replica "$i"
      start_node "$i"
    done
    set_sync "$count" "$sync"
    for i in $(nodes); do url "$i"; done
    ;;
  stop-node)
    stop_node "${2:?which node}" "${3:-fast}"
    ;;
  start-node)
    start_node "${2:?which node}"
    ;;
  urls)
    for i in $(nodes); do url "$i"; done
    ;;
  pid)
    head -n 1 "$(node_dir "${2:?which node}")/postmaster.pid"
    ;;
  status)
    for i in $(nodes); do
      if running "$i"; then state=running; else state=stopped; fi
      echo "node $i  $(url "$i")  $state"
    done
    ;;
  stop)
    for i in $(nodes | sort -rn); do stop_node "$i" fast; done
    ;;
  destroy)
    for i in $(nodes | sort -rn); do stop_node "$i" immediate; done
    rm -rf "$stack"
    ;;
  *)
    usage
    ;;
esac
