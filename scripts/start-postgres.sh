#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the test suite and print its SQLAlchemy URL.
# Installs PostgreSQL from Debian's packages when it is missing. Usage: scripts/start-postgres.sh [PORT] [DIR]
set -euo pipefail
port="${1:-55432}"
dir="${2:-/tmp/tracetune-pg}"

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "installing PostgreSQL from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

run_as_pg() {
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}

if ! "$pgbin/pg_isready" -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = "0" ] && chown postgres "$dir"
    run_as_pg "'$pgbin/initdb' -D '$dir' -U postgres --auth=trust -E UTF8 >/dev/null"
  fi
  run_as_pg "'$pgbin/pg_ctl' -D '$dir' -l '$dir/server.log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null"
fi
echo "postgresql+psycopg://postgres@127.0.0.1:${port}/postgres"
