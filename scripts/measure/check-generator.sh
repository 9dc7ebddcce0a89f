#!/usr/bin/env bash
# Cross-checks `socialnet bench` against wrk on the same endpoint (GET /user/get/{id}), back to
# back: throughput, latency, and what each generator itself costs per request in CPU.
#   scripts/measure/check-generator.sh      # DURATION=10 CONNECTIONS=100 PORT=8092 PG_PORT=5440
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10}
c=${CONNECTIONS:-100}
port=${PORT:-8092}
. scripts/lib/server.sh
db_url=$(scripts/stack/pg-instance.sh start "${PG_PORT:-5440}")
build_release
max_id=$(psql "$db_url" -X -Atq -c "select max(id) from users")
trap stop_server EXIT
start_server "$port" /tmp/socialnet-check-generator.log DATABASE_URL="$db_url"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
out=$(mktemp -d)

MAX_ID=$max_id wrk -t2 -c"$c" -d"${duration}s" --latency -s scripts/measure/wrk/user-get.lua "http://127.0.0.1:$port" > "$out/wrk.txt" &
wrk_pid=$!
sleep 0.2
w0=$(ticks $wrk_pid)
while kill -0 $wrk_pid 2>/dev/null; do w1=$(ticks $wrk_pid 2>/dev/null || echo "$w1"); sleep 0.2; done
wait $wrk_pid || true
requests=$(awk '/requests in/ {print $1}' "$out/wrk.txt")
echo "wrk:             $(awk '/^Requests\/sec/ {print $2}' "$out/wrk.txt") req/s, p99 $(awk '$1 == "99%" {print $2}' "$out/wrk.txt"), generator $(( (w1 - w0) * 10000 / requests )) µs/req (CPU ticks of 10 ms over the run)"

$bin bench run --url "http://127.0.0.1:$port" --database-url "$db_url" --scenarios user-get \
  --connections "$c" --warmup-secs 0 --duration-secs "$duration" --out "$out" --name check 2>/dev/null >/dev/null
python3 - "$out" <<'PY'
import glob, json, sys
r = json.load(open(glob.glob(sys.argv[1] + "/*-check/result.json")[0]))
s = r["scenarios"][0]["steps"][0]
print(f"socialnet bench: {s['throughput_rps']:.2f} req/s, p99 {s['latency_ms']['p99']:.2f}ms, generator {s['generator_cpu_us_per_request']:.1f} µs/req")
PY
rm -rf "$out"
