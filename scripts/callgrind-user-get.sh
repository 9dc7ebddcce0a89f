#!/usr/bin/env bash
# Instructions the server executes per `GET /user/get/{id}`, counted by valgrind's callgrind:
# unlike requests per second on a shared machine, the count repeats from run to run, so it can
# tell a 2 % change in the server's own code from noise. Kernel time (system calls, TCP) is not
# counted; only user space.
#   scripts/callgrind-user-get.sh [BINARY]     # default target/release/socialnet
# Needs valgrind and wrk (Debian packages) and the benchmark instance that scripts/bench-users.sh
# fills (PG_PORT, default 5440). Counts from a WARMUP-second wrk run are discarded; the next
# DURATION seconds (default 15) are counted. Prints the total and the per-request figure, and
# leaves the profile in results/ for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/socialnet}
port=${PORT:-8089}
pg_port=${PG_PORT:-5440}
duration=${DURATION:-15}
warmup=${WARMUP:-5}
out="results/callgrind-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

db_url=$(scripts/pg-instance.sh start "$pg_port")
max_id=$(psql "$db_url" -X -Atq -c "select max(id) from users")

env TOKEN_SECRET=bench RUST_LOG=warn BIND=127.0.0.1:$port DATABASE_URL=$db_url \
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" "$bin" serve \
  > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.5; done

MAX_ID=$max_id wrk -t1 -c10 -d"${warmup}s" -s scripts/wrk/user-get.lua "http://127.0.0.1:$port" > /dev/null
callgrind_control --zero "$server" > /dev/null 2>&1
MAX_ID=$max_id wrk -t1 -c10 -d"${duration}s" -s scripts/wrk/user-get.lua "http://127.0.0.1:$port" \
  > "$out/wrk.txt"
callgrind_control --dump "$server" > /dev/null 2>&1
kill "$server"
wait "$server" 2>/dev/null || true

requests=$(awk '/requests in/ {print $1}' "$out/wrk.txt")
total=$(callgrind_annotate "$out/callgrind.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$requests requests, $total instructions: $((total / requests)) per request" | tee "$out/summary.txt"
echo "profile: $out/callgrind.out.1 (callgrind_annotate --inclusive=yes $out/callgrind.out.1)"
