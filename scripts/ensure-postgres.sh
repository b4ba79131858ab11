#!/usr/bin/env bash
# Installs PostgreSQL's server binaries (initdb, pg_ctl, postgres, psql) and the client tools
# moves run (pg_dump, pg_restore) when the machine lacks them.
set -euo pipefail
have() {
  [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/$1" ] && return 0
  ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1 && return 0
  command -v "$1" >/dev/null 2>&1
}
have_pg() { have initdb && have pg_dump && have pg_restore; }
if have_pg; then exit 0; fi
echo "PostgreSQL binaries not found: installing them with apt-get" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null 2>&1 \
  || $SUDO apt-get install -y -qq postgresql postgresql-client >/dev/null
have_pg || { echo "PostgreSQL installation failed" >&2; exit 1; }
