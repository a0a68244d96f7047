#!/usr/bin/env bash
# One command for the tests: installs Mosquitto, coturn, Chromium, Firefox ESR, D-Bus,
# systemd (for systemd-analyze), ShellCheck, Caddy, Janus, systemd-container and mmdebstrap
# (Debian packages, as root or through sudo), sets up .venv, lints, builds the cached
# Home Assistant venv and Debian rootfs some tests need (once per machine), runs pytest.
# Extra arguments go to pytest (e.g. -k e2e, -m 'not slow').
source "$(dirname "$0")/lib.sh"
ensure_debs mosquitto coturn chromium firefox-esr dbus iproute2 iptables systemd shellcheck \
    caddy janus systemd-container mmdebstrap
ensure_venv test
cd "$ROOT"
say "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
# tests/test_pi_nspawn.py boots a Debian rootfs: build it (~90 s, once per machine, in
# /var/cache/peercam-test) before pytest so that no test timeout pays for it. A failure
# here is reported again by that test, with mmdebstrap's output; the rest still runs.
"$PY" -m tests.nspawn prepare || say "warning: the Debian rootfs for tests/test_pi_nspawn.py could not be built"
# Home Assistant (tests/test_homeassistant_e2e.py) runs in its own Python 3.13 venv,
# cached outside the work tree (/var/cache/peercam-test, keyed by version): built here,
# once per machine (~2-5 min), so its install never counts against a test's timeout.
# Without a Python 3.13 this says so and those tests skip with that reason.
if [ "${PEERCAM_SKIP_HA_BUILD:-0}" != "1" ]; then
    say "Home Assistant test venv"
    "$PY" tests/ha_core.py build \
        || say "warning: the Home Assistant venv did not build (above); its tests will fail"
fi
# Three workers, one test file each at a time: most tests wait on networks and
# timers, not CPU, so this runs the suite (~690 tests) in about 7.5 minutes on 2 cores.
# PEERCAM_TEST_WORKERS=0 runs everything in one process.
WORKERS="${PEERCAM_TEST_WORKERS:-3}"
say "pytest ($WORKERS workers)"
if [ "$WORKERS" = "0" ]; then
    exec "$PY" -m pytest "$@"
fi
exec "$PY" -m pytest -n "$WORKERS" --dist loadfile "$@"
