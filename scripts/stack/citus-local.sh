#!/usr/bin/env bash
# A Citus cluster on this machine, the native twin of docker-compose-citus.yml: a coordinator on
# 127.0.0.1:$PORT (default 5450) and N workers on the next ports, every node with
# `shared_preload_libraries = citus` and `wal_level = logical` (online rebalancing needs it).
# The workers are registered in the coordinator's `postgres` database, where the tests look for
# them (TEST_CITUS_URL=postgres://postgres@127.0.0.1:5450/postgres).
#   scripts/stack/citus-local.sh start [N]      # default 2 workers
#   scripts/stack/citus-local.sh add-node I     # start worker I (not registered: `shards add-worker`)
#   scripts/stack/citus-local.sh stop
# Needs PostgreSQL server binaries with the Citus extension installed; PG_BIN names their folder
# (default: the newest /usr/lib/postgresql/*/bin). Citus is not packaged for every system: see
# the README for how to get it. Data lives under $CITUS_DIR (default /tmp/socialnet-citus).
set -euo pipefail
dir=${CITUS_DIR:-/tmp/socialnet-citus}
port=${PORT:-5450}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}

sql() { # port, database, statement
  psql -X -q -At -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}

# Every node is a scripts/stack/pg-instance.sh instance with these settings on top.
citus_conf="shared_preload_libraries = 'citus'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_worker_processes = 64
shared_buffers = 256MB"

start_node() { # index (0: coordinator)
  local p=$((port + $1))
  PG_BIN=$bin SOCIALNET_PG_ROOT=$dir PG_EXTRA_CONF=$citus_conf \
    "$(dirname "$0")/pg-instance.sh" start "$p" >/dev/null
  sql "$p" postgres "create extension if not exists citus"
}

case "${1:-}" in
  start)
    n=${2:-2}
    for i in $(seq 0 "$n"); do start_node "$i"; done
    sql "$port" postgres "select citus_set_coordinator_host('127.0.0.1', $port)" >/dev/null
    for i in $(seq 1 "$n"); do
      sql "$port" postgres "select citus_add_node('127.0.0.1', $((port + i)))" >/dev/null
    done
    sql "$port" postgres "select nodename || ':' || nodeport || case when groupid = 0 then ' coordinator' else ' worker' end from pg_dist_node order by groupid"
    echo "TEST_CITUS_URL=postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  add-node)
    start_node "$2"
    echo "127.0.0.1:$((port + $2)) is up; register it with: socialnet shards add-worker 127.0.0.1:$((port + $2))"
    ;;
  stop)
    for data in "$dir"/*/; do
      PG_BIN=$bin SOCIALNET_PG_ROOT=$dir "$(dirname "$0")/pg-instance.sh" stop "$(basename "$data")"
    done
    ;;
  *)
    echo "usage: $0 start [N] | add-node I | stop" >&2
    exit 2
    ;;
esac
