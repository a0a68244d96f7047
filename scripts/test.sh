#!/usr/bin/env bash
# One command for the tests: installs Mosquitto, coturn, Chromium, systemd (for
# systemd-analyze), ShellCheck and Caddy (Debian packages, as root or through sudo),
# sets up .venv, lints, runs pytest.
# Extra arguments go to pytest (e.g. -k e2e, -m 'not slow').
source "$(dirname "$0")/lib.sh"
ensure_debs mosquitto coturn chromium iproute2 iptables systemd shellcheck caddy
ensure_venv test
cd "$ROOT"
say "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
say "pytest"
exec "$PY" -m pytest "$@"
