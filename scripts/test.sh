#!/usr/bin/env bash
# The test suite, set up on the way: installs from Debian's packages what the tests need and the
# machine lacks, starts the local services they talk to when they are down, then runs
# `cargo test` with the arguments given (e.g. `scripts/test.sh -- --include-ignored` on a
# machine with a Citus cluster, see the README).
#
# The tests need, on this machine:
#   PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth; TEST_DATABASE_URL to change it)
#   Redis on 127.0.0.1:6379, and the redis-server binary (one test runs a private server)
#   RabbitMQ on 127.0.0.1:5672 (guest/guest), and its binaries (two tests run private nodes)
#   PostgreSQL's server binaries (initdb, pg_basebackup: the replica tests start their own
#   primary and replicas with scripts/stack/replicas-local.sh)
#   haproxy and nginx (the balancer tests put instances behind each)
#   pg_auto_failover (pg_autoctl: the failover test runs a formation with
#   scripts/stack/failover-local.sh)
#   Tarantool on 127.0.0.1:3301 with deploy/tarantool/dialogs.lua (the dialog suite on the
#   in-memory store; TEST_TARANTOOL_URL to change it), started here with
#   scripts/stack/tarantool-local.sh, and the tarantool binary (one test runs its own)
#   prometheus and the PostgreSQL and Redis exporters (the monitoring tests run them with
#   scripts/stack/monitoring-local.sh)
#   chromium and Node.js, with playwright-core from tests/browser/package-lock.json (installed
#   here by npm ci): the live page's test drives two headless browser sessions
# Where the services already run (TEST_*_URL pointing elsewhere, say), plain `cargo test` works.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

# Debian packages behind the commands the suite runs. Installing needs root (or sudo).
missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v pg_autoctl >/dev/null 2>&1 ||
  missing+=("postgresql-$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)-auto-failover")
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v tarantool >/dev/null 2>&1 || missing+=(tarantool)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-postgres-exporter >/dev/null 2>&1 || missing+=(prometheus-postgres-exporter)
command -v prometheus-redis-exporter >/dev/null 2>&1 || missing+=(prometheus-redis-exporter)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  log "installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

wait_for() { # what, seconds, command…
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq 1 "$seconds"); do "$@" && return 0; sleep 1; done
  log "$what did not come up in $seconds s"
  return 1
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
if [ -z "${TEST_DATABASE_URL:-}" ] && ! pg_up; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  wait_for PostgreSQL 30 pg_up
fi

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
if [ -z "${TEST_REDIS_URL:-}" ] && ! redis_up; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 30 redis_up
fi

amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if [ -z "${TEST_AMQP_URL:-}" ] && ! amqp_up; then
  log "starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ 60 amqp_up
fi

# The browser tests' package, at the version the lock file names.
lock=tests/browser/package-lock.json
if ! [ tests/browser/node_modules/.installed-from -nt "$lock" ]; then
  log "installing tests/browser's npm packages"
  (cd tests/browser && npm ci --silent --no-audit --no-fund && touch node_modules/.installed-from)
fi

if [ -z "${TEST_TARANTOOL_URL:-}" ]; then
  # Started if it does not answer; it keeps its data between runs (tests use fresh databases,
  # whose dialogs are apart in it).
  TEST_TARANTOOL_URL=$(scripts/stack/tarantool-local.sh start)
  export TEST_TARANTOOL_URL
fi

exec cargo test "$@"
