#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the console's browser test when the machine
# lacks them (the test fails without them; it never skips).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi
echo "chromium or chromedriver not found: installing them with apt-get" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null \
  || { echo "Chromium installation failed" >&2; exit 1; }
