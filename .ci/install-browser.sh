#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (pytest -m browser) when it is missing.
# Idempotent: does nothing when /usr/bin/chromium exists. Never uses `playwright install`:
# the tests drive the system Chromium through Playwright's executable_path.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version
