#!/usr/bin/env bash
# A RabbitMQ cluster of N nodes on this machine, the native twin of the cluster in
# docker-compose.scale.yml: nodes find each other through peer discovery in their config
# (classic_config) and share one Erlang cookie; queues that must not lose events are quorum queues
# (the application declares them). Loopback only; every node keeps its data under $RABBIT_DIR.
#   scripts/stack/rabbitmq-cluster.sh start [N]     # default 3; AMQP on 127.0.0.1:$RABBIT_PORT..+N-1
#   scripts/stack/rabbitmq-cluster.sh stop-node I   # stop node I (1-based), keeping its data
#   scripts/stack/rabbitmq-cluster.sh start-node I  # start it again; it rejoins the cluster
#   scripts/stack/rabbitmq-cluster.sh status
#   scripts/stack/rabbitmq-cluster.sh stop          # stop every node and delete the data
# Then e.g. AMQP_URL=amqp://guest:guest@127.0.0.1:5681,amqp://guest:guest@127.0.0.1:5682,...
# RABBIT_METRICS_PORT=P enables RabbitMQ's Prometheus plugin, node I's /metrics on 127.0.0.1:P+I-1
# (as the official image has it; scripts/stack/monitoring-local.sh RABBITMQ_TARGETS scrapes it).
# Needs the rabbitmq-server package (its binaries; the system node may keep running beside).
set -euo pipefail
dir=${RABBIT_DIR:-/tmp/socialnet-rabbit}
name=${RABBIT_NAME:-socialnet}
port=${RABBIT_PORT:-5681}
dist_port=${RABBIT_DIST_PORT:-$((port + 20000))}
bin=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}

node() { echo "$name-$1@localhost"; }
ctl() { HOME="$dir" "$bin/rabbitmqctl" "$@"; }
count() { cat "$dir/nodes" 2>/dev/null || echo 0; }

start_node() {
  local i=$1 n
  n=$(count)
  mkdir -p "$dir/node$i"
  {
    echo "listeners.tcp.local = 127.0.0.1:$((port + i - 1))"
    echo "cluster_formation.peer_discovery_backend = classic_config"
    for j in $(seq 1 "$n"); do echo "cluster_formation.classic_config.nodes.$j = $(node "$j")"; done
    if [ -n "${RABBIT_METRICS_PORT:-}" ]; then
      echo "prometheus.tcp.ip = 127.0.0.1"
      echo "prometheus.tcp.port = $((RABBIT_METRICS_PORT + i - 1))"
    fi
  } > "$dir/node$i/rabbitmq.conf"
  if [ -n "${RABBIT_METRICS_PORT:-}" ]; then
    echo '[rabbitmq_prometheus].' > "$dir/node$i/enabled_plugins"
  else
    echo '[].' > "$dir/node$i/enabled_plugins"
  fi
  : > "$dir/node$i/rabbitmq-env.conf"
  HOME="$dir" \
    RABBITMQ_NODENAME="$(node "$i")" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_DIST_PORT=$((dist_port + i - 1)) \
    RABBITMQ_CONF_ENV_FILE="$dir/node$i/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$dir/node$i/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/node$i/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$dir/node$i/mnesia" \
    RABBITMQ_LOG_BASE="$dir/node$i/log" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    "$bin/rabbitmq-server" -detached
}

wait_node() {
  local i=$1
  for _ in $(seq 1 240); do
    if ctl -q -n "$(node "$i")" await_startup --timeout 60 >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "node $(node "$i") did not start; see $dir/node$i/log" >&2
  return 1
}

case "${1:-}" in
  start)
    n=${2:-3}
    mkdir -p "$dir"
    echo "$n" > "$dir/nodes"
    if [ ! -f "$dir/.erlang.cookie" ]; then
      head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/.erlang.cookie"
      chmod 400 "$dir/.erlang.cookie"
    fi
    # The first node forms the cluster; the others, started together, find it and join.
    start_node 1
    wait_node 1
    for i in $(seq 2 "$n"); do start_node "$i"; done
    for i in $(seq 2 "$n"); do wait_node "$i"; done
    for i in $(seq 1 "$n"); do
      printf 'amqp://guest:guest@127.0.0.1:%s  %s\n' $((port + i - 1)) "$(node "$i")"
    done
    ;;
  stop-node)
    ctl -q -n "$(node "$2")" stop
    ;;
  start-node)
    start_node "$2"
    wait_node "$2"
    ;;
  status)
    ctl -n "$(node 1)" cluster_status
    ;;
  stop)
    for i in $(seq 1 "$(count)"); do ctl -q -n "$(node "$i")" stop >/dev/null 2>&1 || true; done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start [N] | stop-node I | start-node I | status | stop" >&2
    exit 2
    ;;
esac
