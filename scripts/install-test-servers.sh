#!/usr/bin/env bash
# Installs the database servers the end-to-end tests of the `sqlx` and `redis` features run
# against: Debian's `postgresql` and `redis-server`. The tests start their own instances on
# loopback (tests/common/servers.rs); nothing here starts a service. Skipped for a server the
# environment already points at (DATABASE_URL, REDIS_URL). Idempotent; prints the directory
# of PostgreSQL's programs (initdb, postgres), or nothing when DATABASE_URL is set.
set -euo pipefail

apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq || true) >&2
    # Debian's packages would start their own servers; the tests start theirs.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "$@" >&2
  else
    echo "install-test-servers: need $* (no apt-get here)" >&2
    exit 1
  fi
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | while read -r dir; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then echo "$dir"; fi
  done | tail -n 1
}

missing=()
if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  missing+=(redis-server)
fi
if [ -z "${DATABASE_URL:-}" ] && [ -z "$(pg_bindir)" ]; then
  missing+=(postgresql)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

if [ -z "${DATABASE_URL:-}" ]; then
  dir=$(pg_bindir)
  if [ -z "$dir" ]; then
    echo "install-test-servers: PostgreSQL's initdb not found after installing" >&2
    exit 1
  fi
  echo "$dir"
fi
