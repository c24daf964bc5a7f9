#!/usr/bin/env bash
# Generates the Python client from a live server's OpenAPI document, type-checks a short walk
# with it (mypy --strict) and runs it. Usage: tests/clients/run.sh BINARY
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m pip install --quiet --disable-pip-version-check "openapi-python-client==0.29.1" "mypy==1.*" 2>&1 | grep -v "as the 'root' user" || true

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
password="client-walk-password-1"
COPILOT_SERVER__BIND="127.0.0.1:$port" COPILOT_DATABASE__PATH="$work/copilot.db" \
  COPILOT_AUTH__PBKDF2_ITERATIONS=1000 COPILOT_BOOTSTRAP__ADMIN_PASSWORD="$password" \
  "$bin" serve --config /dev/null >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/status" >/dev/null && break; sleep 0.1; done

curl -sf "http://127.0.0.1:$port/api/v1/openapi.json" -o "$work/openapi.json"
(cd "$work" && openapi-python-client generate --path openapi.json --meta none --output-path copilot_client >/dev/null)
cp "$here/walk.py" "$work/"
(cd "$work" && python3 -m mypy --strict --follow-imports=silent --no-incremental walk.py)
(cd "$work" && COPILOT_URL="http://127.0.0.1:$port" COPILOT_ADMIN_PASSWORD="$password" python3 walk.py)
