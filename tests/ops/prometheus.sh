#!/usr/bin/env bash
# A real Prometheus (the Debian package) scrapes a live copilot's /metrics with the bearer token
# of [metrics] token; promtool lints the exposition. Installs prometheus where it is missing.
# Usage: tests/ops/prometheus.sh BINARY
set -euo pipefail
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "-- installing prometheus (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
prometheus --version 2>&1 | head -n 1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
prom_port=$(free_port)
token="prometheus-scrape-token-$RANDOM$RANDOM"
cat >"$work/copilot.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
[database]
path = "copilot.db"
[auth]
pbkdf2_iterations = 1000
[bootstrap]
admin_password = "metrics-password-1"
[metrics]
enabled = true
token = "$token"
TOML
"$bin" serve --config "$work/copilot.toml" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
# some traffic to count
curl -sf "$base/api/v1/status" >/dev/null
curl -s "$base/api/v1/users" >/dev/null   # 401

echo "-- without the token: 401"
test "$(curl -s -o /dev/null -w '%{http_code}' "$base/metrics")" = 401

echo "-- promtool check metrics"
curl -sf -H "Authorization: Bearer $token" "$base/metrics" -o "$work/metrics.txt"
promtool check metrics <"$work/metrics.txt"

cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: copilot
    metrics_path: /metrics
    authorization:
      credentials: "$token"
    static_configs:
      - targets: ["127.0.0.1:$port"]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)

query() {
  curl -sf --get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
echo "-- Prometheus scrapes it"
for _ in $(seq 60); do
  up=$(query 'up{job="copilot"}' 2>/dev/null || true)
  [ "$up" = 1 ] && break
  sleep 0.5
done
if [ "$up" != 1 ]; then
  echo "Prometheus did not scrape copilot (up=$up)"; cat "$work/prometheus.log"
  curl -s "http://127.0.0.1:$prom_port/api/v1/targets"; exit 1
fi
unauthorized=$(query 'sum(copilot_http_requests_total{route="/api/v1/users",status="401"})')
ready=$(query 'sum(copilot_db_pool_connections{pool="write"})')
echo "up=1, 401s on /api/v1/users: $unauthorized, write pool connections: $ready"
if [ "$unauthorized" != 1 ] || [ "${ready:-0}" -lt 1 ]; then
  echo "unexpected figures from Prometheus"; exit 1
fi
echo "-- ok"
