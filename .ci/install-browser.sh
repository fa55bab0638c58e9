#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (pytest -m browser) when it is missing, and
# NSS's certutil, with which the HTTPS test makes Chromium trust the CA it made (a profile's own
# NSS database, never ignored certificate errors).
# Idempotent: does nothing when both are there. Never uses `playwright install`: the tests drive
# the system Chromium through Playwright's executable_path.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v certutil >/dev/null || missing+=(libnss3-tools)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
/usr/bin/chromium --version
