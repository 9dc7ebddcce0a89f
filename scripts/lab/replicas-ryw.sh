#!/usr/bin/env bash
# The replicas report (docs/lab/replicas.md), read-after-write: a client creates a post and reads
# it straight back, ROUNDS times, against one server reading from two asynchronous replicas;
# once with its token on the read (the server knows it as the writer: read-your-writes) and once
# without (an anonymous read, which any replica may serve). A read that answers 404 saw a replica
# that had not replayed the post yet. One keep-alive connection, so each read follows its write's
# answer as closely as a client can. Loopback only; under a minute.
#   scripts/lab/replicas-ryw.sh     # ROUNDS=3000 PORT=8097 REPLICAS_PORT=5460
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-3000}
port=${PORT:-8097}
export REPLICAS_PORT=${REPLICAS_PORT:-5460}
. scripts/lib/server.sh
. scripts/lib/replicas-lab.sh
replicas_lab_stack 0
trap stop_server EXIT
start_server "$port" /tmp/socialnet-lab-replicas-ryw.log DATABASE_URL="${urls[0]}" \
  DATABASE_READ_URLS="${urls[1]},${urls[2]}"
# Both replicas up before the first round.
for _ in $(seq 1 100); do
  up=$(curl -fs "http://127.0.0.1:$port/ready" | python3 -c \
    'import json, sys; print(sum(r["state"] == "up" for r in json.load(sys.stdin).get("replicas", [])))')
  [ "$up" = 2 ] && break
  sleep 0.2
done
python3 - "$port" "$rounds" <<'PY'
import http.client, json, sys, time

port, rounds = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)

def call(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()

status, body = call("POST", "/user/register", {"first_name": "Лаб", "second_name": "Чтение",
                                                 "password": "read-your-writes"})
user = json.loads(body)["user_id"]
status, body = call("POST", "/login", {"id": user, "password": "read-your-writes"})
token = json.loads(body)["token"]
time.sleep(2)  # the registration itself is a write: let it age out of read-your-writes
print("| read | rounds | saw its own post | 404: missed it | missed |")
print("|---|---:|---:|---:|---:|")
for mode in ("anonymous", "with the writer's token"):
    seen = missed = 0
    for _ in range(rounds):
        status, body = call("POST", "/post/create", {"text": "читаю, что написал"}, token)
        assert status == 200, (status, body)
        post = json.loads(body)
        status, _ = call("GET", f"/post/get/{post}", token=token if mode != "anonymous" else None)
        if status == 200:
            seen += 1
        elif status == 404:
            missed += 1
        else:
            raise SystemExit(f"unexpected {status}")
    print(f"| {mode} | {rounds} | {seen} | {missed} | {100 * missed / rounds:.1f} % |")
PY
