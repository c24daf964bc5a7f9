#!/usr/bin/env bash
# High availability, shown (README, Operations, "High availability with Patroni"): on loopback,
# one etcd, three PostgreSQL 15 nodes managed by Patroni (synchronous replication: a commit is
# acknowledged once a standby has it too) and two copilot instances on one multi-host URL with
# target_session_attrs=read-write. Under a steady write load through both instances it kills the
# leader (patroni and postgres, kill -9: the machine is gone), waits for the failover, and
# reports the write outage and every acknowledged write that is missing afterwards.
#
# Usage: ops/ha/patroni.sh [--seconds N]    (N: load after the kill, default 25)
#   HA_COPILOT=path   the copilot binary (default: target/release/copilot, built if missing;
#                     not COPILOT_…, which copilot reads as its settings)
#   KEEP=1            leave the cluster's folder in place (its logs) instead of removing it
# Installs the Debian packages patroni, etcd-server, postgresql-15 where they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

seconds=25
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N]" >&2; exit 2 ;;
  esac
done

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif sudo -n true 2>/dev/null; then sudo "$@"
  else echo "error: $* needs root or passwordless sudo" >&2; return 1
  fi
}
need=()
command -v patroni >/dev/null || need+=(patroni)
command -v etcd >/dev/null || need+=(etcd-server)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
if [ ${#need[@]} -gt 0 ]; then
  echo "-- installing ${need[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bin=/usr/lib/postgresql/15/bin

copilot=${HA_COPILOT:-$root/target/release/copilot}
if [ ! -x "$copilot" ]; then
  echo "-- building copilot (release)"
  cargo build --release --quiet
fi

# PostgreSQL refuses to run as root: as root, the cluster runs as the postgres user
run_pg() { "$@"; }
work=$(mktemp -d /tmp/copilot-ha.XXXXXX)
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  chown postgres "$work"
  run_pg() { runuser -u postgres -- "$@"; }
fi
chmod 0755 "$work"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -9 -f "$work" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "-- kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

ports() { python3 -c 'import socket
for _ in range(int(__import__("sys").argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' "$1"; }
read -r etcd_client etcd_peer pg1 pg2 pg3 api1 api2 api3 web1 web2 < <(ports 10 | tr '\n' ' '; echo)

echo "-- etcd on 127.0.0.1:$etcd_client"
run_pg etcd --name ha --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "ha=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
pids+=($!); disown $!

node_config() { # name pg_port api_port
  cat <<EOF
scope: copilot-ha
name: $1
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:$3
  connect_address: 127.0.0.1:$3
etcd3:
  hosts: 127.0.0.1:$etcd_client
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
  initdb:
    - encoding: UTF8
    - auth-local: trust
    - auth-host: scram-sha-256
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:$2
  connect_address: 127.0.0.1:$2
  data_dir: $work/$1
  bin_dir: $bin
  pgpass: $work/$1.pgpass
  authentication:
    replication: {username: replicator, password: replicator-pw}
    superuser: {username: postgres, password: postgres-pw}
  parameters:
    unix_socket_directories: $work
    shared_buffers: 32MB
tags: {}
EOF
}

declare -A node_pg=([n1]=$pg1 [n2]=$pg2 [n3]=$pg3) node_api=([n1]=$api1 [n2]=$api2 [n3]=$api3)
start_node() {
  node_config "$1" "${node_pg[$1]}" "${node_api[$1]}" >"$work/$1.yml"
  run_pg patroni "$work/$1.yml" >"$work/$1.log" 2>&1 &
  pids+=($!); disown $!
}
# the role of a node, from its REST API: master/primary, replica, or nothing
role() { python3 - "$1" <<'EOF'
import json, sys, urllib.request
try:
    print(json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/patroni", timeout=1)).get("role", ""))
except Exception:
    print("")
EOF
}
leader() { for n in n1 n2 n3; do case $(role "${node_api[$n]}") in master|primary) echo "$n"; return;; esac; done; }
wait_for() { # what seconds command...
  local what=$1 limit=$2; shift 2
  for _ in $(seq 1 $((limit * 5))); do "$@" && return 0; sleep 0.2; done
  echo "error: $what did not happen within ${limit}s" >&2; return 1
}

start_node n1
echo "-- waiting for the first leader"
has_leader() { [ -n "$(leader)" ]; }
wait_for "the first node leading" 60 has_leader
start_node n2
start_node n3
sync_standby() { [ "$(python3 - "$api1" <<'EOF'
import json, sys, urllib.request
c = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/cluster", timeout=1))
print(sum(1 for m in c["members"] if m["role"] in ("sync_standby",) and m["state"] in ("running", "streaming")))
EOF
)" -ge 1 ]; }
echo "-- waiting for the replicas (one synchronous)"
wait_for "a synchronous standby" 90 sync_standby
first=$(leader)
echo "-- cluster up: leader $first"

psql_leader() { run_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "${node_pg[$(leader)]}" -U postgres "$@"; }
psql_leader -d postgres -c "CREATE ROLE copilot LOGIN PASSWORD 'copilot-pw'" -c "CREATE DATABASE copilot OWNER copilot"

url="postgres://copilot:copilot-pw@127.0.0.1:$pg1,127.0.0.1:$pg2,127.0.0.1:$pg3/copilot?target_session_attrs=read-write&connect_timeout=2"
web_config() { # port
  cat <<EOF
[server]
bind = "127.0.0.1:$1"
[database]
url = "$url"
path = "$work/unused-$1.db"
[auth]
pbkdf2_iterations = 1000
[bootstrap]
admin_password = "ha-admin-password"
EOF
}
start_web() { # port
  web_config "$1" >"$work/web-$1.toml"
  "$copilot" serve --config "$work/web-$1.toml" >"$work/web-$1.log" 2>&1 &
  pids+=($!); disown $!
  wait_for "copilot on $1 answering" 60 curl -fs -o /dev/null "http://127.0.0.1:$1/health/ready" \
    || { tail -n 20 "$work/web-$1.log" >&2; return 1; }
}
start_web "$web1"
start_web "$web2"
echo "-- copilot on 127.0.0.1:$web1 and 127.0.0.1:$web2"

# the load: writers through both instances, each write's acknowledgement recorded; the leader
# dies after 5 s; afterwards every acknowledged write is looked up through both instances
python3 - "$web1" "$web2" "$seconds" "$work/ack.json" <<'EOF' &
import json, sys, threading, time, urllib.request, urllib.error
web, seconds, out = sys.argv[1:3], float(sys.argv[3]), sys.argv[4]
def call(port, method, path, token=None, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if token: req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read() or b"null")
token = call(web[0], "POST", "/auth/login", body={"username": "admin", "password": "ha-admin-password"})[1]["access_token"]
acks, fails, lock = [], [], threading.Lock()
start, stop = time.time(), time.time() + 5 + seconds
def writer(i):
    n = 0
    while time.time() < stop:
        port = web[i % 2]; n += 1
        name = f"w{i}-{n}"
        t0 = time.time()
        try:
            status, body = call(port, "POST", "/projects", token, {"name": name})
            with lock: acks.append({"id": body["id"], "name": name, "at": time.time() - start, "via": port})
        except Exception as e:
            with lock: fails.append({"at": t0 - start, "via": port, "error": str(e)[:120]})
            time.sleep(0.05)
threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
json.dump({"acks": acks, "fails": fails, "token": token}, open(out, "w"))
EOF
load=$!
sleep 5
victim=$(leader)
echo "-- $(date +%T) killing the leader $victim (patroni and postgres, kill -9)"
pkill -9 -f "patroni $work/$victim.yml" || true
pkill -9 -f -- "-D $work/$victim( |$)" || true
new_leader() { local l; l=$(leader); [ -n "$l" ] && [ "$l" != "$victim" ]; }
wait_for "a new leader" 60 new_leader
echo "-- $(date +%T) new leader: $(leader)"
wait "$load"

python3 - "$web1" "$web2" "$work/ack.json" <<'EOF'
import json, sys, urllib.request
web, data = sys.argv[1:3], json.load(open(sys.argv[3]))
acks, fails = sorted(data["acks"], key=lambda a: a["at"]), data["fails"]
times = [a["at"] for a in acks]
gaps = [(b - a, a) for a, b in zip(times, times[1:])]
outage, at = max(gaps) if gaps else (0.0, 0.0)
lost = []
for i, a in enumerate(acks):
    port = web[i % 2]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/projects/{a['id']}")
    req.add_header("authorization", f"Bearer {data['token']}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            if json.loads(r.read())["name"] != a["name"]: lost.append(a)
    except Exception:
        lost.append(a)
print(f"acknowledged writes: {len(acks)}; failed attempts: {len(fails)}")
print(f"write outage: {outage:.2f} s (no write acknowledged between t={at:.2f} s and t={at + outage:.2f} s)")
print(f"acknowledged writes missing after the failover: {len(lost)}")
sys.exit(1 if lost or not acks else 0)
EOF
