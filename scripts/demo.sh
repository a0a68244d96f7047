#!/usr/bin/env bash
# One command for the demo: sets up .venv and runs `peercam demo`.
# Extra arguments go to `peercam demo` (e.g. --port 8081).
source "$(dirname "$0")/lib.sh"
ensure_venv demo
exec "$PY" -m peercam demo "$@"
