#!/usr/bin/env bash
# Instructions the server executes per request, counted by valgrind's callgrind: unlike requests
# per second on a shared machine, the count repeats from run to run, so it can tell a 2 % change
# in the server's own code from noise. Kernel time (system calls, TCP) is not counted; only user
# space.
#   scripts/measure/callgrind-requests.sh [user-get|search] [BINARY]   # default user-get,
#                                                               # target/release/socialnet
# user-get asks for random ids; search for 2-3 letter prefix pairs of real users (100 per page).
# Needs valgrind and wrk (Debian packages) and the benchmark instance that scripts/measure/bench-users.sh
# fills (PG_PORT, default 5440). Counts from a WARMUP-second wrk run are discarded; the next
# DURATION seconds (default 15) are counted. Prints the total and the per-request figure, and
# leaves the profile in results/ for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/../.."
scenario=${1:-user-get}
case "$scenario" in
  user-get) script=scripts/measure/wrk/user-get.lua ;;
  search) script=scripts/measure/wrk/search.lua ;;
  *) echo "unknown scenario: $scenario (user-get or search)" >&2; exit 2 ;;
esac
port=${PORT:-8089}
pg_port=${PG_PORT:-5440}
duration=${DURATION:-15}
warmup=${WARMUP:-5}
out="results/callgrind-$scenario-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

. scripts/lib/server.sh
bin=${2:-target/release/socialnet}
db_url=$(scripts/stack/pg-instance.sh start "$pg_port")
max_id=$(psql "$db_url" -X -Atq -c "select max(id) from users")
scripts/measure/prefix-pairs.sh "$db_url" > "$out/pairs.txt"

trap stop_server EXIT
# Under valgrind the server starts some twenty times slower.
SERVER_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$out/callgrind.out" READY_WAIT=75 \
  start_server "$port" "$out/server.log" DATABASE_URL="$db_url"

export MAX_ID=$max_id PAIRS_FILE=$out/pairs.txt
wrk -t1 -c10 -d"${warmup}s" -s "$script" "http://127.0.0.1:$port" > /dev/null
callgrind_control --zero "$server" > /dev/null 2>&1
wrk -t1 -c10 -d"${duration}s" -s "$script" "http://127.0.0.1:$port" > "$out/wrk.txt"
callgrind_control --dump "$server" > /dev/null 2>&1
stop_server

requests=$(awk '/requests in/ {print $1}' "$out/wrk.txt")
total=$(callgrind_annotate "$out/callgrind.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$requests requests, $total instructions: $((total / requests)) per request" | tee "$out/summary.txt"
echo "profile: $out/callgrind.out.1 (callgrind_annotate --inclusive=yes $out/callgrind.out.1)"
