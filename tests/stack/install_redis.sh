#!/usr/bin/env bash
# Redis from Debian, for the native Celery test (tests/stack/test_native_celery.py): the test starts
# its own throw-away redis-server on a free 127.0.0.1 port; the packaged service is not needed.
# Idempotent: installs only when redis-server is missing, with one `apt-get update` when it does.
set -euo pipefail

command -v redis-server >/dev/null && exit 0

SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server
