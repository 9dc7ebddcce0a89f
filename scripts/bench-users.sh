#!/usr/bin/env bash
# The users benchmark behind docs/benchmarks/users.md: wrk against a release server on a dedicated
# PostgreSQL instance holding USERS generated users, side by side with pgbench on that instance.
#   scripts/bench-users.sh            # DURATION=15 USERS=1000000 PORT=8088 PG_PORT=5440
# Everything runs on loopback and stops by itself; results land in results/users-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-15}
users=${USERS:-1000000}
port=${PORT:-8088}
pg_port=${PG_PORT:-5440}
out="results/users-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

db_url=$(scripts/pg-instance.sh start "$pg_port")
psql_q() { psql "$db_url" -X -Atq -v ON_ERROR_STOP=1 "$@"; }
cargo build --release --quiet
bin=target/release/socialnet

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
psql_q -F $'\t' -c "select left(first_name, 2 + (random() > 0.5)::int), left(second_name, 2 + (random() > 0.5)::int)
                    from users tablesample system (2) limit 20000" |
  python3 -c 'import sys, urllib.parse as u
for line in sys.stdin:
    f, s = line.rstrip("\n").split("\t")
    print("first_name=" + u.quote(f) + "&last_name=" + u.quote(s))' > "$out/pairs.txt"

env TOKEN_SECRET=bench RUST_LOG=warn BIND=127.0.0.1:$port DATABASE_URL=$db_url ${POOL:+DB_POOL_SIZE=$POOL} \
  $bin serve > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$server/status; }
peak_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$server/status; }

summary="$out/summary.md"
echo "| scenario | connections | requests/s | p50 ms | p99 ms | errors | server RSS MB |" > "$summary"
echo "|---|---|---|---|---|---|---|" >> "$summary"

wrk_run() { # name, connections, script
  local name=$1 c=$2 script=$3 file="$out/$1-c$2.txt"
  MAX_ID=$max_id PAIRS_FILE="$out/pairs.txt" wrk -t2 -c"$c" -d"${duration}s" --latency -s "$script" \
    "http://127.0.0.1:$port" > "$file"
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "$file")
  p50=$(awk '$1 == "50%" {print $2}' "$file")
  p99=$(awk '$1 == "99%" {print $2}' "$file")
  errors=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {for (i = 4; i <= NF; i += 2) n += $i} END {print n + 0}' "$file")
  echo "| $name | $c | $rps | $(to_ms "$p50") | $(to_ms "$p99") | $errors | $(rss_mb) |" | tee -a "$summary"
}
to_ms() { # wrk prints 1.23ms, 456.00us or 1.20s
  python3 -c 'import sys; v = sys.argv[1]
print(round(float(v[:-2]) / 1000, 3) if v.endswith("us") else float(v[:-2]) if v.endswith("ms") else float(v[:-1]) * 1000)' "$1"
}
pgbench_run() { # connections
  local c=$1 file="$out/pgbench-c$1.txt"
  pgbench -S -M prepared -n -c "$c" -j 2 -T "$duration" "$pgbench_url" > "$file" 2>&1
  local tps
  tps=$(awk '/^tps/ {print $3; exit}' "$file")
  echo "| pgbench -S -M prepared | $c | $tps | | | | |" | tee -a "$summary"
}

for c in 10 100; do
  wrk_run user-get "$c" scripts/wrk/user-get.lua
  pgbench_run "$c"
done
for c in 10 100; do
  wrk_run user-search "$c" scripts/wrk/search.lua
done
wrk_run login 10 scripts/wrk/login.lua
echo "peak server RSS (VmHWM): $(peak_mb) MB" | tee -a "$summary"
echo "results in $out"
