#!/usr/bin/env bash
# System packages the stack tests (tests/stack) need, from Debian; .ci/run calls this.
# Idempotent: installs only what is missing, with one `apt-get update` when it does.
#   postgresql       the native stack test starts its own throw-away cluster on a free port
#   docker-compose   Compose v1's parser: `docker-compose config` interpolates and validates the
#                    compose file without a Docker engine (its Recommends, the engine, are skipped)
set -euo pipefail

missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v docker-compose >/dev/null || missing+=(docker-compose)
((${#missing[@]})) || exit 0

SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
