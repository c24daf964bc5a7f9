#!/usr/bin/env bash
# Installs pgvector for a Debian PostgreSQL where the distribution has no binary package of it
# (Debian bookworm packages PostgreSQL 15 but not postgresql-15-pgvector): the source package
# of Debian trixie (pgvector 0.8.0-1, fetched with apt from deb.debian.org, its signature checked
# against the Debian archive keyring) is built against this server's headers
# (postgresql-server-dev-N) and installed into its extension directory. Then, as a superuser,
# once per database: CREATE EXTENSION vector (copilot does it at start when it may).
# Usage: ops/pgvector.sh [postgresql major version, default 15]. Needs root (or sudo).
set -euo pipefail
version=${1:-15}
pgvector=0.8.0-1
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif sudo -n true 2>/dev/null; then sudo "$@"
  else echo "error: $* needs root or passwordless sudo" >&2; return 1
  fi
}
if [ -f "/usr/share/postgresql/$version/extension/vector.control" ]; then
  echo "-- pgvector: $(grep default_version "/usr/share/postgresql/$version/extension/vector.control") for PostgreSQL $version"
  exit 0
fi
# the package lists may be missing (a fresh container): fetched once before looking
[ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial -e auxfiles)" ] || as_root apt-get update -qq
if apt-cache show "postgresql-$version-pgvector" >/dev/null 2>&1; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "postgresql-$version-pgvector" >/dev/null
  exit 0
fi
echo "-- pgvector: building Debian's source package $pgvector for PostgreSQL $version"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "postgresql-server-dev-$version" build-essential dpkg-dev >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  > "$work/sources.list"
chmod -R a+rwX "$work"
apt_src=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
         -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
apt-get "${apt_src[@]}" update -qq
(cd "$work" && apt-get "${apt_src[@]}" source --download-only -qq "pgvector=$pgvector" 2>&1 | grep -v "unsandboxed" || true)
# the .dsc is signed by its uploader, whose key is not in the archive keyring: apt has checked it
# already, by its hash in the signed Sources index; dpkg-source checks the tarballs' hashes
dpkg-source -x "$work"/pgvector_*.dsc "$work/src" >/dev/null 2>&1
pg_config=/usr/lib/postgresql/$version/bin/pg_config
# OPTFLAGS="": no -march=native, so the build runs on any x86-64 (pgvector's own advice)
make -s -C "$work/src" PG_CONFIG="$pg_config" OPTFLAGS="" >/dev/null
as_root make -s -C "$work/src" PG_CONFIG="$pg_config" install >/dev/null
echo "-- pgvector: $(grep default_version "/usr/share/postgresql/$version/extension/vector.control") installed for PostgreSQL $version"
