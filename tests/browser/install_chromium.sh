#!/usr/bin/env bash
# Debian's Chromium and its ChromeDriver for the browser test; idempotent (does nothing when both exist).
# Test tools' own browser downloads do not work on the closed CI network; Debian's packages do.
set -euo pipefail

[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && exit 0

SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver
