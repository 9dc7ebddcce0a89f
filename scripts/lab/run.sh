#!/usr/bin/env bash
# The whole lab in one command: every report of scripts/lab/ measured again from a clean state,
# one step after another, then the page of them all (`socialnet lab index`: LAB_DIR/index.html,
# every technique's before/after plots and the reading of each comparison; it opens offline).
#   scripts/lab/run.sh                  # the full run, into docs/lab: about 65 minutes here
#   scripts/lab/run.sh --quick          # every step at small sizes, into results/lab-quick: a
#                                       # few minutes (CI runs it); its numbers show the
#                                       # pipeline works, not what a technique is worth
#   scripts/lab/run.sh --quick feed live    # only the steps named (and the page)
# Steps: indexes feed live live-burst replicas replicas-sync replicas-ryw failover balancers
# dialogs-hop dialogs-unread dialogs dialogs-memory. Each step says when it starts and how long
# the run has left at the usual times of its mode; long loads inside a step (`socialnet fake`)
# show rows/s and an ETA on a terminal, plain lines otherwise.
# Clean state: the lab's own PostgreSQL instances and Tarantool live under LAB_STATE (default
# /tmp/socialnet-lab-full, or -quick), stopped and removed before the run; the run refuses to
# start while one of its loopback ports is taken. What it needs is what the tests need
# (scripts/test.sh installs it); the Citus parts of the dialogs steps run when a local Citus
# cluster answers on CITUS_PORT (scripts/stack/citus-local.sh start 2), and are listed on the page
# as not measured otherwise. SOCIALNET_BIN runs another binary than a release build of this
# checkout (CI gives its debug build to the quick run).
set -euo pipefail
cd "$(dirname "$0")/../.."
quick=no
if [ "${1:-}" = --quick ]; then
  quick=yes
  shift
fi
all=(indexes feed live live-burst replicas replicas-sync replicas-ryw failover balancers
  dialogs-hop dialogs-unread dialogs dialogs-memory)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${all[@]}")
for step in "${steps[@]}"; do
  [[ " ${all[*]} " == *" $step "* ]] || { echo "no step $step; the steps: ${all[*]}" >&2; exit 2; }
done

if [ $quick = yes ]; then
  export LAB_DIR=${LAB_DIR:-results/lab-quick}
  state=${LAB_STATE:-/tmp/socialnet-lab-quick}
else
  export LAB_DIR=${LAB_DIR:-docs/lab}
  state=${LAB_STATE:-/tmp/socialnet-lab-full}
fi
export SOCIALNET_PG_ROOT=$state/pg LAB_TARANTOOL_ROOT=$state/tarantool RUST_LOG=warn
sized() { # quick value, full value
  if [ $quick = yes ]; then echo "$1"; else echo "$2"; fi
}
# The quick run's sweep: two connection counts, a second each (after the scripts' warm-up).
sweep=()
[ $quick = no ] || sweep=(DURATION=1 CONNECTIONS=1,10)

# Seconds each step usually takes (on 2 cores; the full run's from a whole run of 2026-12-04,
# 3,819 s with the Citus legs, the quick run's from CI's), for the time left.
declare -A usual_full=([indexes]=120 [feed]=630 [live]=360 [live-burst]=260 [replicas]=300
  [replicas-sync]=110 [replicas-ryw]=10 [failover]=140 [balancers]=45 [dialogs]=520
  [dialogs-hop]=165 [dialogs-unread]=120 [dialogs-memory]=1080)
declare -A usual_quick=([indexes]=15 [feed]=20 [live]=55 [live-burst]=15 [replicas]=40
  [replicas-sync]=20 [replicas-ryw]=5 [failover]=75 [balancers]=20 [dialogs]=25
  [dialogs-hop]=25 [dialogs-unread]=25 [dialogs-memory]=80)

# 1. A clean state: what an earlier run of this mode left is stopped and removed.
clean() {
  scripts/stack/pg-instance.sh stop 5440 || true
  REPLICAS_PORT=5460 scripts/stack/replicas-local.sh stop >/dev/null 2>&1 || true
  FAILOVER_PORT=5480 scripts/stack/failover-local.sh stop >/dev/null 2>&1 || true
  TARANTOOL_PORT=3311 SOCIALNET_TARANTOOL_ROOT=$LAB_TARANTOOL_ROOT \
    scripts/stack/tarantool-local.sh stop >/dev/null 2>&1 || true
  rm -rf "$state"
}
clean
mkdir -p "$state" "$LAB_DIR"
busy=()
for port in 3311 5440 5460 5461 5462 5480 5481 5482 6391 8091 8093 8095 8096 8097 8098 8100 \
  8101 8102 8200 8201 8202; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=("$port"); fi
done
if [ ${#busy[@]} -gt 0 ]; then
  echo "the lab's loopback ports ${busy[*]} are taken: stop what listens there first" >&2
  exit 1
fi

. scripts/lib/server.sh
build_release
[ -n "${SOCIALNET_BIN:-}" ] || export SOCIALNET_BIN=$bin

run_step() { # name
  case "$1" in
    indexes)
      env USERS="$(sized 20000 1000000)" "${sweep[@]}" scripts/lab/indexes.sh ;;
    feed)
      # The social graph on the users of the indexes step (which makes them if it did not run).
      local db have
      db=$(scripts/stack/pg-instance.sh start 5440)
      have=$(psql "$db" -X -Atq -c "select count(*) from users" 2>/dev/null || echo 0)
      [ "$have" -ge "$(sized 20000 1000000)" ] ||
        $bin fake users --database-url "$db" --count $(($(sized 20000 1000000) - have)) --seed 42
      have=$(psql "$db" -X -Atq -c "select count(*) from friends")
      [ "$have" -gt 0 ] ||
        $bin fake social --database-url "$db" --follows-per-user "$(sized 10 30)" \
          --posts-per-user 5 --seed 7
      env "${sweep[@]}" scripts/lab/feed.sh ;;
    live)
      env "${sweep[@]}" scripts/lab/live.sh ;;
    live-burst)
      env FOLLOWERS="$(sized 2000 1000000)" CONNECTED="$(sized 100 10000)" \
        DURATION="$(sized 2 20)" scripts/lab/live-burst.sh ;;
    replicas)
      env USERS="$(sized 20000 1000000)" "${sweep[@]}" scripts/lab/replicas.sh ;;
    replicas-sync)
      env USERS="$(sized 20000 1000000)" "${sweep[@]}" scripts/lab/replicas-sync.sh ;;
    replicas-ryw)
      mkdir -p "$LAB_DIR/replicas"
      ROUNDS="$(sized 200 3000)" scripts/lab/replicas-ryw.sh | tee "$LAB_DIR/replicas/read-your-writes.md" ;;
    failover)
      if [ $quick = yes ]; then
        env DURATION=12 KILL_AFTER=3 USERS=2000 CONNECTIONS=20 scripts/lab/failover.sh
      else
        scripts/lab/failover.sh
      fi ;;
    balancers)
      if [ $quick = yes ]; then
        set -- DURATION=8 KILL_AFTER=3 USERS=2000 CONNECTIONS=20
      else
        set --
      fi
      env DATABASE_URL=postgres://postgres@127.0.0.1:5440/lab_balancers "$@" scripts/lab/balancers.sh ;;
    dialogs | dialogs-hop | dialogs-unread | dialogs-memory)
      # The hop and the counters on the first size (they run first, and load it); the dialogs
      # step tops that up to ten times as many; the stores' comparison loads both sizes itself,
      # on a database made afresh (and a fresh Citus database when Citus is up).
      if [ "$1" = dialogs-memory ]; then
        rm -f "$LAB_DIR/dialogs/memory.md" # its table gets a row per size of this run
        scripts/stack/pg-instance.sh start 5440 >/dev/null
        psql postgres://postgres@127.0.0.1:5440/postgres -X -q -c "drop database if exists lab_dialogs with (force)"
        if psql "postgres://postgres@127.0.0.1:${CITUS_PORT:-5450}/postgres" -X -Atq \
          -c "select count(*) from pg_dist_node" >/dev/null 2>&1; then
          . scripts/lib/dialogs-lab.sh
          fresh_citus "${CITUS_PORT:-5450}" lab_dialogs_stores >/dev/null
        fi
      fi
      local sizes=()
      [ $quick = no ] || sizes=(MESSAGES_UNIT=20000 MESSAGES=20000 DIALOG_USERS=2000
        TARANTOOL_MEMORY_MB=256 CONNECTIONS=1,10 DURATION=1)
      env "${sizes[@]}" "scripts/lab/$1.sh" ;;
  esac
}

started=$(date +%s)
left=0
for step in "${steps[@]}"; do
  if [ $quick = yes ]; then left=$((left + usual_quick[$step])); else left=$((left + usual_full[$step])); fi
done
n=0
for step in "${steps[@]}"; do
  n=$((n + 1))
  echo "== [$n/${#steps[@]}] $step: started $(date +%H:%M:%S), $(($(date +%s) - started)) s into the run; about $(((left + 59) / 60)) min left at the usual times"
  step_started=$(date +%s)
  if ! run_step "$step"; then
    echo "== [$n/${#steps[@]}] $step failed after $(($(date +%s) - step_started)) s" >&2
    exit 1
  fi
  if [ $quick = yes ]; then left=$((left - usual_quick[$step])); else left=$((left - usual_full[$step])); fi
  echo "== [$n/${#steps[@]}] $step: done in $(($(date +%s) - step_started)) s"
done
$bin lab index --dir "$LAB_DIR"
clean
echo "== the lab ($([ $quick = yes ] && echo quick || echo full), ${#steps[@]} steps) took $(($(date +%s) - started)) s: $LAB_DIR/index.html"
