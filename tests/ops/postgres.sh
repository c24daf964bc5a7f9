#!/usr/bin/env bash
# The PostgreSQL tests of tests/api/postgres.rs on a real, throwaway PostgreSQL 15 cluster
# (pg_virtualenv, from postgresql-common: a fresh cluster on a free port, PG* variables set,
# dropped afterwards). Installs the Debian packages where they are missing. Under this script a
# missing cluster fails the tests (REQUIRE_POSTGRES=1) instead of skipping them.
# Usage: tests/ops/postgres.sh [filter]          the tests named postgres* (or those of the filter)
#        tests/ops/postgres.sh --http [filter…]   the whole HTTP suite served from PostgreSQL
#                                                 (TEST_BACKEND=postgres: a database per test)
set -euo pipefail
cd "$(dirname "$0")/../.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif sudo -n true 2>/dev/null; then sudo "$@"
  else echo "error: installing $* needs root or passwordless sudo" >&2; return 1
  fi
}
apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

version=15
if ! command -v pg_virtualenv >/dev/null || [ ! -x "/usr/lib/postgresql/$version/bin/postgres" ]; then
  echo "-- installing PostgreSQL $version (Debian packages postgresql-$version, postgresql-common)"
  if apt-cache show "postgresql-$version" >/dev/null 2>&1 || { as_root apt-get update -qq && apt-cache show "postgresql-$version" >/dev/null 2>&1; }; then
    apt_install "postgresql-$version" postgresql-common
  else
    # a distribution without 15: its own default version
    apt_install postgresql postgresql-common
    version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
    echo "-- postgresql-15 is not packaged here; using PostgreSQL $version"
  fi
fi
# pgvector (vectors in the knowledge base): the distribution's package, or Debian's source built
bash ops/pgvector.sh "$version"
"/usr/lib/postgresql/$version/bin/postgres" --version

if [ "${1:-}" = --http ]; then
  shift
  TEST_BACKEND=postgres REQUIRE_POSTGRES=1 pg_virtualenv -t -v "$version" cargo test --test api "$@"
else
  # -t: the cluster lives in a temporary folder, so that two runs at once do not collide
  REQUIRE_POSTGRES=1 pg_virtualenv -t -v "$version" cargo test --test api "${@:-postgres}"
fi
