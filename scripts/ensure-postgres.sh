#!/usr/bin/env bash
# Installs PostgreSQL's server binaries (initdb, pg_ctl, postgres, psql) when the machine has none.
set -euo pipefail
have_pg() {
  [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ] && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 0
  command -v initdb >/dev/null 2>&1
}
if have_pg; then exit 0; fi
echo "PostgreSQL binaries not found: installing them with apt-get" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql-15 >/dev/null 2>&1 || $SUDO apt-get install -y -qq postgresql >/dev/null
have_pg || { echo "PostgreSQL installation failed" >&2; exit 1; }
