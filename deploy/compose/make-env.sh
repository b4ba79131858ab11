#!/usr/bin/env bash
# Writes deploy/compose/.env with fresh random secrets (mode 600), unless one exists.
# Usage: deploy/compose/make-env.sh [path]   (default: .env beside this script)
set -euo pipefail
env_file="${1:-$(dirname "$0")/.env}"
if [[ -e "$env_file" ]]; then
  echo "$env_file exists; remove it first to make new secrets" >&2
  exit 1
fi
# Hex only: every secret is safe in a URL and in a shell.
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
umask 077
cat > "$env_file" <<VARS
ZITADEL_MASTERKEY=$(hex 16)
ZITADEL_DB_PASSWORD=$(hex 24)
ZITADEL_ADMIN_PASSWORD=Aa1!$(hex 12)
REGISTRY_DB_PASSWORD=$(hex 24)
SERVER_PASSWORD=$(hex 24)
TENANCY_MASTER_KEY=$(hex 32)
VARS
echo "wrote $env_file"
