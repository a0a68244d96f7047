#!/usr/bin/env bash
# Build a wheelhouse: every Python package peercam needs on a Pi, as wheels in one folder,
# so that `install-pi.sh --wheels DIR` installs without reaching a package index.
#
#   bash scripts/pi-wheels.sh --pi DIR        # for Raspberry Pi OS Bookworm 64-bit, from any machine
#   bash scripts/pi-wheels.sh DIR             # for a machine like this one (run it on a Pi: 32-bit too)
#   bash scripts/pi-wheels.sh --platform manylinux_2_36_x86_64 --python-version 3.11 DIR
#
# Then copy DIR and this source tree to the Pi and run
#   sudo scripts/install-pi.sh --bundle ~/frontdoor --wheels DIR
# The wheels are downloaded with pip (from PyPI, or the index pip is configured for);
# --pi means --platform manylinux_2_36_aarch64 --python-version 3.11 (Bookworm's glibc and Python).
# The build tools of pyproject.toml (setuptools, wheel) are included: pip builds peercam itself
# from the source tree on the Pi.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLATFORM=""
PYVER=""
DEST=""
PYTHON="${PYTHON:-python3}"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --pi) PLATFORM=manylinux_2_36_aarch64; PYVER=3.11; shift ;;
        --platform) PLATFORM="${2:?--platform needs a pip platform tag}"; shift 2 ;;
        --python-version) PYVER="${2:?--python-version needs a version such as 3.11}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "pi-wheels.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [ -z "$DEST" ] || { echo "pi-wheels.sh: one folder only" >&2; exit 2; }; DEST="$1"; shift ;;
    esac
done
[ -n "$DEST" ] || { usage >&2; exit 2; }

# The requirements, read from pyproject.toml (dependencies + build-system requires).
mapfile -t REQS < <("$PYTHON" - "$SRC/pyproject.toml" <<'EOF'
import sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))
for req in data["build-system"]["requires"] + data["project"]["dependencies"]:
    print(req)
EOF
)

args=(--dest "$DEST" --only-binary=:all: --disable-pip-version-check --quiet)
if [ -n "$PLATFORM" ]; then
    # pip matches a platform tag literally: manylinux_2_36 also takes every older glibc's wheel.
    if [[ "$PLATFORM" =~ ^manylinux_2_([0-9]+)_(.+)$ ]]; then
        for ((minor = BASH_REMATCH[1]; minor >= 17; minor--)); do
            args+=(--platform "manylinux_2_${minor}_${BASH_REMATCH[2]}")
        done
        args+=(--platform "manylinux2014_${BASH_REMATCH[2]}")
    else
        args+=(--platform "$PLATFORM")
    fi
    args+=(--implementation cp)
fi
if [ -n "$PYVER" ]; then
    args+=(--python-version "$PYVER")
    [ -n "$PLATFORM" ] || { echo "pi-wheels.sh: --python-version needs --platform" >&2; exit 2; }
fi
mkdir -p "$DEST"
"$PYTHON" -m pip download "${args[@]}" "${REQS[@]}"
echo "wheelhouse $DEST: $(find "$DEST" -name '*.whl' | wc -l) wheels" >&2
