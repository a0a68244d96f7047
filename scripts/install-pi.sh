#!/usr/bin/env bash
# Install (or update) peercam as a systemd service on Raspberry Pi OS Bookworm.
#
#   sudo scripts/install-pi.sh --bundle ~/frontdoor     # a bundle from `peercam provision device add`
#   sudo scripts/install-pi.sh                          # update the code, keep /etc/peercam as it is
#   sudo scripts/install-pi.sh --wheels DIR --bundle …  # offline: Python packages from a wheelhouse
#                                                       # (make one with: bash scripts/pi-wheels.sh --pi DIR)
#   scripts/install-pi.sh --dry-run --bundle DIR        # print what would be done, change nothing
#
# What it does (each step only when needed, so running it again is safe):
#   1. apt packages: Python venv, picamera2/libcamera, gpiozero/lgpio, ALSA tools
#   2. the system user `peercam` in the groups video, audio, gpio
#   3. a venv in /opt/peercam/venv (--system-site-packages: picamera2 comes from apt)
#      with peercam installed from this source tree (from PyPI, or only from --wheels DIR)
#   4. /etc/peercam: the bundle's peercam.toml and secrets (root:peercam, 0640)
#   5. systemd/peercam.service, enabled and (re)started
# Logs: journalctl -u peercam -f
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/peercam
VENV="$PREFIX/venv"
ETC=/etc/peercam
UNIT=/etc/systemd/system/peercam.service
SERVICE_USER=peercam
GROUPS_WANTED=(video audio gpio)
APT_PACKAGES=(python3 python3-venv python3-pip ca-certificates alsa-utils)
APT_OPTIONAL=(python3-picamera2 python3-libcamera python3-gpiozero python3-lgpio)

BUNDLE=""
WHEELS=""
DRY_RUN=0
START=1

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    echo
    echo "options: --bundle DIR  --wheels DIR  --dry-run  --no-start  --help"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) BUNDLE="${2:?--bundle needs a folder}"; shift 2 ;;
        --bundle=*) BUNDLE="${1#--bundle=}"; shift ;;
        --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
        --wheels=*) WHEELS="${1#--wheels=}"; shift ;;
        --dry-run|-n) DRY_RUN=1; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-pi.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'install-pi.sh: %s\n' "$*" >&2; exit 1; }

# run CMD...: run it, or print it with --dry-run.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 $*), or try --dry-run"
fi
[ -f "$SRC/pyproject.toml" ] || die "$SRC is not a peercam source tree"

if [ -n "$BUNDLE" ]; then
    [ -f "$BUNDLE/peercam.toml" ] || die "$BUNDLE/peercam.toml not found (make one with: peercam provision device add ID)"
    [ -f "$BUNDLE/mqtt-password" ] || die "$BUNDLE/mqtt-password not found: copy the whole bundle folder"
    # The bundle's secrets are installed into $ETC: its config must read them there.
    outside="$(sed -nE 's/^[a-z_]+_file *= *"([^"]+)".*/\1/p' "$BUNDLE/peercam.toml" | grep -v "^$ETC/" || true)"
    [ -z "$outside" ] || die "$BUNDLE/peercam.toml reads files outside $ETC ($(echo "$outside" | tr '\n' ' ')): it was made with 'peercam provision init --install-dir'; this script installs into $ETC, so run 'init --install-dir $ETC' and 'device add' again (or install that bundle by hand)"
fi

PIP_SOURCE=()
if [ -n "$WHEELS" ]; then
    [ -d "$WHEELS" ] || die "--wheels $WHEELS: no such folder"
    compgen -G "$WHEELS/*.whl" >/dev/null || die "--wheels $WHEELS holds no .whl files (make them with: bash scripts/pi-wheels.sh --pi $WHEELS)"
    WHEELS="$(cd "$WHEELS" && pwd)"
    PIP_SOURCE=(--no-index --find-links "$WHEELS")
fi

if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    [ "${VERSION_CODENAME:-}" = bookworm ] || say "warning: made for Bookworm, this is ${PRETTY_NAME:-unknown}"
fi

# --- 1. packages --------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
for pkg in "${APT_OPTIONAL[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
    if apt-cache show "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    else
        say "note: $pkg is not available here (only on Raspberry Pi OS); skipping it"
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    run env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- 2. the service user -------------------------------------------------------------------
CREATED_GROUPS=()  # recorded in $ETC/created-groups: uninstall-pi.sh --purge removes only these
for group in "${GROUPS_WANTED[@]}"; do
    if ! getent group "$group" >/dev/null; then
        run groupadd --system "$group"
        CREATED_GROUPS+=("$group")
    fi
done
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    say "creating the system user $SERVICE_USER"
    run useradd --system --user-group --home-dir /var/lib/peercam --no-create-home \
        --shell /usr/sbin/nologin --comment "peercam daemon" "$SERVICE_USER"
fi
for group in "${GROUPS_WANTED[@]}"; do
    if ! id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
        run usermod -aG "$group" "$SERVICE_USER"
    fi
done

# --- 3. code -------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV (with system site packages, for picamera2)"
    run install -d -m 0755 "$PREFIX"
    run python3 -m venv --system-site-packages "$VENV"
fi
say "installing peercam from $SRC into $VENV${WHEELS:+ (packages only from $WHEELS)}"
run "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PIP_SOURCE[@]}" --upgrade "$SRC"
run install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

# --- 4. config -----------------------------------------------------------------------------
run install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
if [ ${#CREATED_GROUPS[@]} -gt 0 ]; then
    if [ "$DRY_RUN" = 1 ]; then
        echo "+ echo ${CREATED_GROUPS[*]} >> $ETC/created-groups"
    else
        printf '%s\n' "${CREATED_GROUPS[@]}" >> "$ETC/created-groups"
    fi
fi
if [ -n "$BUNDLE" ]; then
    say "installing the bundle $BUNDLE into $ETC"
    if [ -f "$ETC/peercam.toml" ] && ! cmp -s "$BUNDLE/peercam.toml" "$ETC/peercam.toml"; then
        run cp -p "$ETC/peercam.toml" "$ETC/peercam.toml.bak.$(date +%Y%m%d%H%M%S)"
    fi
    run install -m 0640 -o root -g "$SERVICE_USER" "$BUNDLE/peercam.toml" "$ETC/peercam.toml"
    for secret in mqtt-password turn-secret; do
        if [ -f "$BUNDLE/$secret" ]; then
            run install -m 0640 -o root -g "$SERVICE_USER" "$BUNDLE/$secret" "$ETC/$secret"
        fi
    done
    if [ -f "$BUNDLE/ca.crt" ]; then
        run install -m 0644 -o root -g root "$BUNDLE/ca.crt" "$ETC/ca.crt"
    fi
    if [ -f "$BUNDLE/viewers.txt" ]; then  # Web Push only to viewers still granted
        run install -m 0644 -o root -g root "$BUNDLE/viewers.txt" "$ETC/viewers.txt"
    fi
elif [ ! -f "$ETC/peercam.toml" ]; then
    say "no bundle and no $ETC/peercam.toml: installing the example (edit it, then start)"
    run install -m 0640 -o root -g "$SERVICE_USER" "$SRC/peercam.example.toml" "$ETC/peercam.toml"
    START=0
fi

# --- 5. the service ------------------------------------------------------------------------
if ! cmp -s "$SRC/systemd/peercam.service" "$UNIT"; then
    run install -m 0644 "$SRC/systemd/peercam.service" "$UNIT"
    run systemctl daemon-reload
fi
run systemctl enable peercam.service
if [ "$START" = 1 ]; then
    # --no-block: READY comes once the broker is reached; do not hang the installer on it.
    run systemctl restart --no-block peercam.service
    say "started: follow it with  journalctl -u peercam -f  (it says 'online' once connected)"
else
    say "installed but not started: edit $ETC/peercam.toml, then  sudo systemctl start peercam"
fi
