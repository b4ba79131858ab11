#!/usr/bin/env bash
# Remakes the console's screenshots in docs/images with the browser test that takes them.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/images
TENANCY_SCREENSHOTS="$PWD/docs/images" cargo nextest run -p tenancy-registry \
  browser::in_chromium_a_platform_admin_suspends_a_tenant_and_a_tenant_admin_sees_only_theirs
