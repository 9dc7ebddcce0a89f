#!/bin/bash
# One member of a pg_auto_failover formation (docker-compose.failover.yml): ROLE=monitor, or
# ROLE=node joining the monitor at MONITOR_HOST. Created on first start, then run by pg_autoctl,
# which keeps PostgreSQL up, and on a node promotes it when the monitor says so. Authentication is
# `trust` on the compose project's private network only: a lab, not a production setting.
set -euo pipefail
export PGDATA=/var/lib/postgresql/data/pgdata
: "${ROLE:?monitor or node}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  case "$ROLE" in
    monitor)
      pg_autoctl create monitor --pgdata "$PGDATA" --hostname "$(hostname)" --auth trust --no-ssl
      cat /etc/pg-auto-failover-monitor.conf >>"$PGDATA/postgresql.conf"
      ;;
    node)
      : "${MONITOR_HOST:?}"
      until pg_isready -q -h "$MONITOR_HOST" -d pg_auto_failover; do sleep 1; done
      pg_autoctl create postgres --pgdata "$PGDATA" --hostname "$(hostname)" --auth trust --no-ssl \
        --dbname socialnet --name "$(hostname)" \
        --monitor "postgres://autoctl_node@$MONITOR_HOST/pg_auto_failover?sslmode=disable"
      ;;
    *)
      echo "ROLE must be monitor or node" >&2
      exit 2
      ;;
  esac
fi
exec pg_autoctl run --pgdata "$PGDATA"
