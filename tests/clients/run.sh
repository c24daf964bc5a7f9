#!/usr/bin/env bash
# Checks the OpenAPI document the way users' tools read it, against a live server:
#   - Schemathesis (examples, coverage, fuzzing, stateful; 90 s): no server error, no response
#     that breaks the document (status, content type, headers, schema, Allow);
#   - Redocly lint: no error;
#   - openapi-python-client generates a client; a short walk with it passes mypy --strict and runs;
#   - openapi-typescript generates types; a walk with openapi-fetch passes tsc --strict and runs.
# Usage: tests/clients/run.sh BINARY
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m pip install --quiet --disable-pip-version-check "openapi-python-client==0.29.1" "mypy==1.19.*" \
  "schemathesis==4.32.5" 2>&1 \
  | grep -v "as the 'root' user" || true
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
password="client-walk-password-1"
cat >"$work/copilot.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
[database]
path = "copilot.db"
[auth]
pbkdf2_iterations = 1000
[bootstrap]
admin_password = "$password"
TOML
"$bin" serve --config "$work/copilot.toml" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/status" >/dev/null && break; sleep 0.1; done
export COPILOT_URL="http://127.0.0.1:$port" COPILOT_ADMIN_PASSWORD="$password"
curl -sf "$COPILOT_URL/api/v1/openapi.json" -o "$work/openapi.json"

echo "-- redocly lint"
"$here/node_modules/.bin/redocly" lint --format=summary "$work/openapi.json" 2>&1 | tail -n 3

echo "-- python: openapi-python-client + mypy --strict"
(cd "$work" && openapi-python-client generate --path openapi.json --meta none --output-path copilot_client >/dev/null)
cp "$here/walk.py" "$work/"
(cd "$work" && python3 -m mypy --strict --follow-imports=silent --no-incremental walk.py)
(cd "$work" && python3 walk.py)

echo "-- typescript: openapi-typescript + openapi-fetch + tsc --strict"
mkdir -p "$work/ts"
cp "$here/walk.ts" "$here/env.d.ts" "$here/tsconfig.json" "$work/ts/"
ln -s "$here/node_modules" "$work/ts/node_modules"
echo '{"type": "module"}' >"$work/ts/package.json"
"$here/node_modules/.bin/openapi-typescript" "$work/openapi.json" -o "$work/ts/schema.d.ts" >/dev/null
(cd "$work/ts" && ./node_modules/.bin/tsc -p tsconfig.json --outDir out)
(cd "$work/ts" && node out/walk.js)

# last: its fuzzing changes the admin account (password, lockout) that the walks log in with
echo "-- schemathesis"
token=$(curl -sf "$COPILOT_URL/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\": \"admin\", \"password\": \"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# logout and change-password would revoke the token the run uses
(cd "$work" && schemathesis --config-file "$here/schemathesis.toml" run "$COPILOT_URL/api/v1/openapi.json" \
  --url "$COPILOT_URL/api/v1" -H "Authorization: Bearer $token" --phases examples,coverage,fuzzing,stateful \
  --max-time 90 --exclude-operation-id auth_logout --exclude-operation-id auth_change_password --no-color \
  >"$work/schemathesis.log" 2>&1) || { cat "$work/schemathesis.log"; exit 1; }
tail -n 4 "$work/schemathesis.log"
