#!/usr/bin/env bash
# Browser tests of the admin console: headless Chromium driven by playwright-core, against a
# release build of copilot on a temporary database and a free port, with a mock OpenAI-compatible
# provider (mock-llm.mjs, another free port) serving the model gemini-pro.
#   tests/browser/run.sh            # from anywhere in the repository
# Environment: CHROMIUM (default /usr/bin/chromium), SKIP_BUILD=1 to reuse target/release/copilot.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM" ]; then
  echo "== installing chromium"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

echo "== npm ci"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

bin="$root/target/release/copilot"
if [ "${SKIP_BUILD:-}" != "1" ]; then
  # cargo rebuilds only when something changed; static/ is embedded into release builds
  echo "== cargo build --release"
  (cd "$root" && cargo build --release)
fi
[ -x "$bin" ] || { echo "missing $bin (run cargo build --release)" >&2; exit 1; }

work="$(mktemp -d)"
server_pid=""
llm_pid=""
cleanup() {
  for pid in $server_pid $llm_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting the mock LLM provider"
node "$here/mock-llm.mjs" > "$work/llm.log" 2>&1 &
llm_pid=$!
for _ in $(seq 1 50); do
  grep -q '^listening on ' "$work/llm.log" 2>/dev/null && break
  kill -0 "$llm_pid" 2>/dev/null || { cat "$work/llm.log" >&2; echo "mock provider exited" >&2; exit 1; }
  sleep 0.1
done
LLM_URL="$(sed -n 's/^listening on \(http:[^ ]*\)$/\1/p' "$work/llm.log" | head -1)"
[ -n "$LLM_URL" ] || { cat "$work/llm.log" >&2; echo "the mock provider did not start" >&2; exit 1; }

export ADMIN_PASSWORD="admin-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
echo "== starting copilot on a temporary database"
: > "$work/config.toml"
COPILOT_DATABASE__PATH="$work/copilot.db" \
COPILOT_SERVER__BIND="127.0.0.1:0" \
COPILOT_BOOTSTRAP__ADMIN_PASSWORD="$ADMIN_PASSWORD" \
COPILOT_AUTH__PBKDF2_ITERATIONS=1000 \
COPILOT_LOG__LEVEL=warn \
COPILOT_LLM__PROVIDERS="[{name = \"mock\", base_url = \"$LLM_URL\", api_key_env = \"\", models = [\"gemini-pro\"], timeout_seconds = 10}]" \
  "$bin" --config "$work/config.toml" > "$work/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 100); do
  grep -q '^Ready\.' "$work/server.log" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "server exited" >&2; exit 1; }
  sleep 0.1
done
grep -q '^Ready\.' "$work/server.log" || { cat "$work/server.log" >&2; echo "server did not start" >&2; exit 1; }
BASE_URL="$(sed -n 's/^copilot .* listening on \(http:[^ ]*\).*/\1/p' "$work/server.log" | head -1)"
[ -n "$BASE_URL" ] || { cat "$work/server.log" >&2; echo "no address in the banner" >&2; exit 1; }
export BASE_URL
export SCREENSHOTS="${SCREENSHOTS:-$root/docs/screenshots}"
echo "== testing $BASE_URL (LLM provider $LLM_URL)"

cd "$here"
status=0
node --test --test-concurrency=1 console.test.mjs || status=$?
if [ "$status" != 0 ]; then
  echo "== server log (tail)"; tail -n 40 "$work/server.log"
fi
exit "$status"
