#!/bin/sh
# Installs the browser the dashboard tests drive: Debian's Chromium. Playwright's own
# browser download needs the internet, which CI does not have. Idempotent: when Chromium
# is already there it changes nothing (and skips the slow `apt-get update`).
# The tests look for it at $ZAPMUX_CHROMIUM, else /usr/bin/chromium.
set -eu

chromium="${ZAPMUX_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then
    echo "install-browser: $chromium is already installed"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y chromium
echo "install-browser: installed $(command -v chromium)"
