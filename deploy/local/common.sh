# Sourced by run.sh and stop.sh: where the local cluster lives and how its binaries run.
ROOT=$PWD
LOCAL=$ROOT/.local
PGDATA=$LOCAL/pgdata

pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ]; then echo "$d"; else dirname "$(command -v initdb)"; fi
}
BIN=$(pg_bin)

# initdb refuses to run as root: PostgreSQL runs as the unprivileged 'postgres' user then.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    local user=postgres
    id "$user" >/dev/null 2>&1 || user=nobody
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}
