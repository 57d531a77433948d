#!/usr/bin/env bash
# Offline check of docker/compose.yaml and docker/compose.platform.yaml against the services' code
# (required settings, connection strings, ports, the gateway's routes): no Docker engine needed.
# Ends with "compose check: N services consistent", or lists the problems and exits 1.
# Its one tool comes from npm (docker/package.json: js-yaml).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/docker"

command -v npm >/dev/null || { echo "compose check: needs node and npm" >&2; exit 1; }
# Exactly the locked versions; only errors are shown.
npm ci --no-audit --no-fund --loglevel=error >/dev/null
exec node compose-check.mjs
