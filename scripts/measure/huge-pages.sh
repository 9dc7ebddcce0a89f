#!/usr/bin/env bash
# What readers of the largest dialog pages cost everyone else, through the main service: the
# split stack (the main service forwarding to the dialog service, one database), a dialog of
# 1,000 messages of 4,000 characters of the costliest text the build accepts (U+0001, which JSON
# writes as six bytes, else the four-byte emoji), READERS connections asking for all of it
# (`limit=1000`) for RUN_SECONDS, and beside them one other user listing a short dialog. Prints the
# main service's memory (resident before, peak after), the bytes of one big page, and the other
# user's list latency (wrk's p50 / p90 / p99) alone and beside the readers.
#   scripts/measure/huge-pages.sh [BINARY]     # default target/release/socialnet
# READERS (default 8), RUN_SECONDS (default 20), PORT (default 18300: main on PORT, dialogs on PORT+1).
# Needs curl, jq, wrk (Debian packages) and PostgreSQL on 127.0.0.1:5432; uses a database of its
# own, dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/socialnet}
readers=${READERS:-8}
seconds=${RUN_SECONDS:-20}
port=${PORT:-18300}
main=http://127.0.0.1:$port
name=socialnet_huge_pages_$$
admin=postgres://postgres@127.0.0.1:5432/postgres
db=postgres://postgres@127.0.0.1:5432/$name
work=$(mktemp -d)
pids=()

finish() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$admin" -X -qc "drop database if exists $name with (force)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap finish EXIT

ready() { for _ in $(seq 1 150); do curl -fs "$1/ready" >/dev/null && return 0; sleep 0.2; done; return 1; }

common=(RUST_LOG=warn RATE_LIMITS=off DATABASE_URL="$db")
env "${common[@]}" SERVICE=dialogs BIND="127.0.0.1:$((port + 1))" "$bin" serve >"$work/dialogs.log" 2>&1 &
pids+=($!)
ready "http://127.0.0.1:$((port + 1))" || { tail "$work/dialogs.log" >&2; exit 1; }
env "${common[@]}" BIND="127.0.0.1:$port" DIALOGS_URL="http://127.0.0.1:$((port + 1))" \
  "$bin" serve >"$work/main.log" 2>&1 &
main_pid=$!
pids+=("$main_pid")
ready "$main" || { tail "$work/main.log" >&2; exit 1; }

user() { # first name → "id token"
  local id token
  id=$(curl -fs "$main/user/register" -H 'content-type: application/json' \
    -d "{\"first_name\":\"$1\",\"second_name\":\"Замеров\",\"password\":\"correct horse battery\"}" | jq -r .user_id)
  token=$(curl -fs "$main/login" -H 'content-type: application/json' \
    -d "{\"id\":\"$id\",\"password\":\"correct horse battery\"}" | jq -r .token)
  echo "$id $token"
}
read -r anna anna_token < <(user Анна)
read -r boris _ < <(user Борис)
read -r vera vera_token < <(user Вера)
read -r gleb _ < <(user Глеб)

send() { # token, to, body file → status
  curl -s -o /dev/null -w '%{http_code}' "$main/dialog/$2/send" -H "authorization: Bearer $1" \
    -H 'content-type: application/json' --data-binary "@$3"
}
# The costliest text this build takes.
python3 -c 'import json; print(json.dumps({"text": "\u0001" * 4000}))' >"$work/control.json"
python3 -c 'import json; print(json.dumps({"text": "\U0001F600" * 4000}, ensure_ascii=False))' >"$work/emoji.json"
body=$work/control.json
text="4,000 x U+0001"
if [ "$(send "$anna_token" "$boris" "$body")" != 200 ]; then
  body=$work/emoji.json
  text="4,000 x U+1F600 (U+0001 is refused)"
  [ "$(send "$anna_token" "$boris" "$body")" = 200 ] || { echo "no big message accepted" >&2; exit 1; }
fi
for _ in $(seq 2 1000); do send "$anna_token" "$boris" "$body" >/dev/null; done
echo '{"text": "короткое сообщение"}' >"$work/short.json"
for _ in $(seq 1 100); do send "$vera_token" "$gleb" "$work/short.json" >/dev/null; done

page_bytes=$(curl -s -o /dev/null -w '%{size_download}' -H "authorization: Bearer $anna_token" \
  "$main/dialog/$boris/list?limit=1000")
page_count=$(curl -s -H "authorization: Bearer $anna_token" "$main/dialog/$boris/list?limit=1000" | jq length)
rss() { awk -v k="$1:" '$1 == k {print int($2 / 1024)}' "/proc/$main_pid/status"; }
rss_before=$(rss VmRSS)

victim() { # → "p50 p90 p99" of another user's short list
  wrk -t1 -c1 -d"${seconds}s" --latency -H "authorization: Bearer $vera_token" \
    "$main/dialog/$gleb/list?limit=100" >"$work/victim.txt"
  awk '$1 == "50%" {a = $2} $1 == "90%" {b = $2} $1 == "99%" {c = $2} END {print a, b, c}' "$work/victim.txt"
}
alone=$(victim)
wrk -t1 -c"$readers" -d"$((seconds + 2))s" -H "authorization: Bearer $anna_token" \
  "$main/dialog/$boris/list?limit=1000" >"$work/readers.txt" &
readers_pid=$!
sleep 1
beside=$(victim)
wait "$readers_pid"
big_pages=$(awk '/requests in/ {print $1}' "$work/readers.txt")
rss_peak=$(rss VmHWM)

echo "binary: $bin"
echo "big dialog: 1,000 messages of $text; one limit=1000 page: $page_count messages, $page_bytes bytes"
echo "main service memory: $rss_before MB resident before, $rss_peak MB peak after"
echo "$readers readers: $big_pages big pages in $((seconds + 2)) s"
echo "another user's list (limit=100) p50 / p90 / p99: alone $alone; beside the readers $beside"
