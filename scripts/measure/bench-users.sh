#!/usr/bin/env bash
# The users benchmark behind docs/benchmarks/users.md: wrk against a release server on a dedicated
# PostgreSQL instance holding USERS generated users, side by side with pgbench on that instance.
#   scripts/measure/bench-users.sh            # DURATION=15 ROUNDS=3 USERS=1000000 PORT=8088 PG_PORT=5440
# user-get and pgbench take turns ROUNDS times at each concurrency (this machine's speed drifts
# by more than the differences measured, so each round's ratio compares neighbours), and search
# at 100 connections runs ROUNDS times. Each step also records the CPU it cost per request: the
# server's and PostgreSQL's process time, and the whole machine's busy time (/proc/stat), the
# one measure that covers pgbench too. Everything runs on loopback and stops by itself; results
# land in results/users-<time>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-15}
rounds=${ROUNDS:-3}
users=${USERS:-1000000}
port=${PORT:-8088}
pg_port=${PG_PORT:-5440}
out="results/users-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

. scripts/lib/server.sh
db_url=$(scripts/stack/pg-instance.sh start "$pg_port")
psql_q() { psql "$db_url" -X -Atq -v ON_ERROR_STOP=1 "$@"; }
build_release

have=$(psql_q -c "select count(*) from users" 2>/dev/null || echo 0)
if [ "$have" -lt "$users" ]; then
  $bin fake users --database-url "$db_url" --count $((users - have)) --seed 42 | tee "$out/fake.txt"
fi
max_id=$(psql_q -c "select max(id) from users")

# pgbench's read-only TPC-B-like select at the same scale (scale 10 = 1,000,000 accounts).
pgbench_url="${db_url%/*}/pgbench"
psql "${db_url%/*}/postgres" -X -Atq -c "select 1 from pg_database where datname = 'pgbench'" | grep -q 1 ||
  { psql "${db_url%/*}/postgres" -X -q -c "create database pgbench" && pgbench -i -s 10 -q "$pgbench_url" 2>/dev/null; }

# 2-3 letter prefix pairs of real users, URL-encoded.
scripts/measure/prefix-pairs.sh "$db_url" > "$out/pairs.txt"

trap stop_server EXIT
start_server "$port" "$out/server.log" DATABASE_URL="$db_url" ${POOL:+DB_POOL_SIZE=$POOL}

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$server/status; }
peak_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$server/status; }

summary="$out/summary.md"
echo "| scenario | connections | requests/s | p50 ms | p99 ms | errors | server RSS MB | server µs/req | PostgreSQL µs/req | machine µs/req | idle % |" > "$summary"
echo "|---|---|---|---|---|---|---|---|---|---|---|" >> "$summary"

# CPU accounting, in clock ticks: the server's own, the benchmark instance's processes (children
# of its postmaster), and the machine's busy and idle time. pgbench's backends exit before the end
# of its step, so its rows carry only the machine's figures.
hz=$(getconf CLK_TCK)
postmaster=$(head -n 1 "${SOCIALNET_PG_ROOT:-/tmp/socialnet-pg}/$pg_port/postmaster.pid")
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0 p; for p in $(pgrep -P "$postmaster"); do t=$((t + $(ticks_of "$p"))); done; echo "$t"; }
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }
cpu_start() { s_server=$(ticks_of "$server"); s_pg=$(pg_ticks); read -r s_busy s_idle < <(machine); }
cpu_columns() { # requests [-1: no per-process cells] -> "server | PostgreSQL | machine | idle"
  local e_server e_pg e_busy e_idle
  e_server=$(ticks_of "$server"); e_pg=$(pg_ticks); read -r e_busy e_idle < <(machine)
  python3 -c 'import sys
n, hz, server, pg, busy, idle = map(float, sys.argv[1:])
us = lambda t: round(t * 1e6 / hz / n, 1)
cell = lambda t: us(t) if t >= 0 else ""
print(f"{cell(server)} | {cell(pg)} | {us(busy)} | {round(100 * idle / (busy + idle), 1)}")' \
    "$1" "$hz" "${2:-$((e_server - s_server))}" "${2:-$((e_pg - s_pg))}" "$((e_busy - s_busy))" "$((e_idle - s_idle))"
}

wrk_run() { # name, connections, script, [file suffix]
  local name=$1 c=$2 script=$3 file="$out/$1-c$2${4:-}.txt"
  cpu_start
  MAX_ID=$max_id PAIRS_FILE="$out/pairs.txt" wrk -t2 -c"$c" -d"${duration}s" --latency -s "$script" \
    "http://127.0.0.1:$port" > "$file"
  local rps p50 p99 errors requests
  requests=$(awk '/requests in/ {print $1}' "$file")
  local cpu; cpu=$(cpu_columns "$requests")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$file")
  p50=$(awk '$1 == "50%" {print $2}' "$file")
  p99=$(awk '$1 == "99%" {print $2}' "$file")
  errors=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {for (i = 4; i <= NF; i += 2) n += $i} END {print n + 0}' "$file")
  echo "| $name | $c | $rps | $(to_ms "$p50") | $(to_ms "$p99") | $errors | $(rss_mb) | $cpu |" | tee -a "$summary"
  last_rps=$rps last_p99=$(to_ms "$p99")
}
to_ms() { # wrk prints 1.23ms, 456.00us or 1.20s
  python3 -c 'import sys; v = sys.argv[1]
print(round(float(v[:-2]) / 1000, 3) if v.endswith("us") else float(v[:-2]) if v.endswith("ms") else float(v[:-1]) * 1000)' "$1"
}
pgbench_run() { # connections, [file suffix]
  local c=$1 file="$out/pgbench-c$1${2:-}.txt"
  cpu_start
  pgbench -S -M prepared -n -c "$c" -j 2 -T "$duration" "$pgbench_url" > "$file" 2>&1
  local tps transactions cpu
  tps=$(awk '/^tps/ {print $3; exit}' "$file")
  transactions=$(awk '/number of transactions actually processed/ {print $NF}' "$file")
  cpu=$(cpu_columns "$transactions" -1)
  echo "| pgbench -S -M prepared | $c | $tps | | | | | $cpu |" | tee -a "$summary"
  last_tps=$tps
}
median() { python3 -c 'import statistics, sys; print(round(statistics.median(map(float, sys.argv[1:])), 3))' "$@"; }

ratios=()
for c in 10 100; do
  round_ratios=()
  for r in $(seq 1 "$rounds"); do
    wrk_run user-get "$c" scripts/measure/wrk/user-get.lua "-r$r"
    pgbench_run "$c" "-r$r"
    round_ratios+=("$(python3 -c "print(round($last_rps / $last_tps, 3))")")
  done
  ratios+=("user-get / pgbench at $c connections, by round: ${round_ratios[*]}; median $(median "${round_ratios[@]}")")
done
wrk_run user-search 10 scripts/measure/wrk/search.lua
p99s=()
for r in $(seq 1 "$rounds"); do
  wrk_run user-search 100 scripts/measure/wrk/search.lua "-r$r"
  p99s+=("$last_p99")
done
wrk_run login 10 scripts/measure/wrk/login.lua
{
  echo
  for line in "${ratios[@]}"; do echo "- $line"; done
  echo "- search p99 at 100 connections, by round: ${p99s[*]} ms; median $(median "${p99s[@]}") ms"
  echo "- peak server RSS (VmHWM): $(peak_mb) MB"
} | tee -a "$summary"
echo "results in $out"
