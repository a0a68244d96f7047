# Shared set-up steps for scripts/demo.sh and scripts/test.sh (sourced, not run).
# Installs only what is missing: Debian packages (as root, or through sudo),
# a virtual environment in .venv, and the Python packages of pyproject.toml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PEERCAM_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_debs PKG... : install the Debian packages that are not installed yet.
ensure_debs() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "need root to install: ${missing[*]} (run as root, or: apt-get install ${missing[*]})"
        sudo=(sudo)
    fi
    say "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv EXTRA : a venv with peercam installed (editable) with that extra.
ensure_venv() {
    local extra="$1"
    command -v python3 >/dev/null || ensure_debs python3
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "peercam needs Python 3.11 or newer (this is $(python3 --version))"
    if [ ! -x "$PY" ]; then
        python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_debs python3-venv
        say "creating virtual environment $VENV"
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.peercam-$extra"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        say "installing Python packages (peercam[$extra])"
        "$PY" -m pip install -q --upgrade pip
        "$PY" -m pip install -q -e "$ROOT[$extra]"
        touch "$stamp"
    fi
}
