#!/usr/bin/env bash
# A throw-away PostgreSQL instance on a loopback port, for benchmarks (and, later, replicas),
# so measurements do not depend on how the machine's own server is tuned.
#   scripts/stack/pg-instance.sh start [PORT]   # initdb if needed, start; prints the URL
#   scripts/stack/pg-instance.sh stop  [PORT]
# Data lives in $SOCIALNET_PG_ROOT/<port> (default /tmp/socialnet-pg/<port>). Extra settings can be
# passed in PG_EXTRA_CONF (lines appended to postgresql.conf at initdb time; later lines win),
# and PG_BIN names the server binaries (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail
action=${1:?start or stop}
port=${2:-5440}
root=${SOCIALNET_PG_ROOT:-/tmp/socialnet-pg}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
data="$root/$port"

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    mkdir -p "$root"
    [ "$(id -u)" = 0 ] && chown postgres: "$root"
    if [ ! -f "$data/PG_VERSION" ]; then
      as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
      cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 300
shared_buffers = 1GB
effective_cache_size = 4GB
random_page_cost = 1.1
${PG_EXTRA_CONF:-}
CONF
    fi
    if ! as_postgres "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
    fi
    echo "postgres://postgres@127.0.0.1:$port/socialnet"
    ;;
  stop)
    as_postgres "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|stop [PORT]" >&2
    exit 2
    ;;
esac
