#!/usr/bin/env bash
# `make run`: a private PostgreSQL cluster under .local/ (created once, kept between runs), then
# the registry on 127.0.0.1:8080 with a development token (none when TENANCY_ZITADEL_ISSUER is
# set: the registry then takes ZITADEL's tokens only).
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/local/common.sh
PORT=${TENANCY_LOCAL_PG_PORT:-54329}
mkdir -p "$LOCAL"
chmod 755 "$LOCAL"

own() { if [ "$(id -u)" -eq 0 ]; then chown -R "$(id -u postgres 2>/dev/null || id -u nobody)" "$@"; fi; }

secret() { # secret FILE: a random value, made once
  [ -s "$1" ] || (umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$1")
  cat "$1"
}
PG_PASSWORD=$(secret "$LOCAL/pg-password")
MASTER_KEY=$(secret "$LOCAL/master-key")
DEV_TOKEN=$(secret "$LOCAL/dev-token")

if [ ! -f "$PGDATA/PG_VERSION" ]; then
  echo "creating the local PostgreSQL cluster in $PGDATA"
  mkdir -p "$PGDATA"
  pwfile=$(mktemp "$LOCAL/pwfile.XXXX")
  printf '%s' "$PG_PASSWORD" > "$pwfile"
  own "$PGDATA" "$pwfile"
  as_pg "$BIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C --pwfile="$pwfile" >/dev/null
  rm -f "$pwfile"
fi
if ! as_pg "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  echo "starting PostgreSQL on 127.0.0.1:$PORT"
  own "$PGDATA"
  as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -o \
    "-c port=$PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300" start >/dev/null
fi
export PGPASSWORD=$PG_PASSWORD
if [ "$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -XAtc "SELECT count(*) FROM pg_database WHERE datname = 'tenancy_registry'" postgres)" = 0 ]; then
  "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -Xqc "CREATE DATABASE tenancy_registry" postgres
fi
unset PGPASSWORD

export TENANCY_CONFIG=$ROOT/deploy/local/tenancy.toml
export TENANCY_REGISTRY__URL="postgres://postgres:$PG_PASSWORD@127.0.0.1:$PORT/tenancy_registry"
export TENANCY_LOCAL_PG_PASSWORD=$PG_PASSWORD
export TENANCY_MASTER_KEY=$MASTER_KEY
if [ -n "${TENANCY_ZITADEL_ISSUER:-}" ]; then
  # The registry refuses the development token beside ZITADEL's tokens.
  unset TENANCY_DEV_TOKEN
  DEV_TOKEN=""
  TOKEN_NOTE="none: TENANCY_ZITADEL_ISSUER is set, so use a ZITADEL token (REGISTRY_TOKEN is empty)"
else
  export TENANCY_DEV_TOKEN=$DEV_TOKEN
  TOKEN_NOTE=$DEV_TOKEN
fi
export TENANCY_LISTEN=${TENANCY_LISTEN:-127.0.0.1:8080}

# Everything curl and tenantctl need in another shell: `source .local/registry.env`.
(umask 077; cat > "$LOCAL/registry.env" <<ENV
export REGISTRY_URL=http://$TENANCY_LISTEN
export REGISTRY_TOKEN=$DEV_TOKEN
export TENANCY_CONFIG=$TENANCY_CONFIG
export TENANCY_REGISTRY__URL=$TENANCY_REGISTRY__URL
export TENANCY_LOCAL_PG_PASSWORD=$PG_PASSWORD
export TENANCY_MASTER_KEY=$MASTER_KEY
export PATH="$ROOT/target/release:\$PATH"
ENV
)
echo "building tenancy-registry and tenantctl (release; the first build takes about ten minutes)"
cargo build --release -p tenancy-registry -p tenantctl
cat <<MSG

  registry:          http://$TENANCY_LISTEN
  development token: $TOKEN_NOTE
  PostgreSQL:        127.0.0.1:$PORT (data in .local/pgdata)

  In another shell:  source .local/registry.env
                     curl -H "Authorization: Bearer \$REGISTRY_TOKEN" \$REGISTRY_URL/v1/tenants
                     tenantctl status
  make stop          stops the registry and the local PostgreSQL cluster
  make reset         removes the local state (asks first)

MSG
echo $$ > "$LOCAL/registry.pid"
exec "$ROOT/target/release/tenancy-registry"
