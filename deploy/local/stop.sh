#!/usr/bin/env bash
# `make stop`: stops what `make run` started, the registry and the local PostgreSQL cluster.
# `make reset` (with --reset): then removes the local state, after asking.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/local/common.sh

if [ -s "$LOCAL/registry.pid" ]; then
  pid=$(cat "$LOCAL/registry.pid")
  if kill -0 "$pid" 2>/dev/null && grep -q tenancy-registry "/proc/$pid/cmdline" 2>/dev/null; then
    echo "stopping the registry (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$LOCAL/registry.pid"
fi

if [ -f "$PGDATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  echo "stopping the local PostgreSQL cluster"
  as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi

if [ "${1:-}" = "--reset" ]; then
  if [ "${TENANCY_RESET_YES:-}" != 1 ]; then
    read -r -p "remove the local cluster, its tenants and the local secrets under .local/? [y/N] " answer
    [ "$answer" = y ] || [ "$answer" = Y ] || { echo "nothing removed"; exit 0; }
  fi
  rm -rf "$PGDATA" "$LOCAL/pg-password" "$LOCAL/master-key" "$LOCAL/dev-token" "$LOCAL/registry.env"
  echo "removed the local state; make run starts afresh"
fi
