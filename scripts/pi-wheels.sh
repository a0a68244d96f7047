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
# A pure-Python package published only as a source archive (http-ece is one) has no
# wheel to download for another platform: build its wheel here (py3-none-any works on
# the Pi too) and let the download find it in $DEST. Bounded: one build per package.
args+=(--find-links "$DEST")
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for _ in 1 2 3 4 5 6 7 8; do
    if "$PYTHON" -m pip download "${args[@]}" "${REQS[@]}" 2>"$log"; then
        echo "wheelhouse $DEST: $(find "$DEST" -name '*.whl' | wc -l) wheels" >&2
        exit 0
    fi
    missing="$(sed -nE 's/.*No matching distribution found for ([^ ]+).*/\1/p' "$log" | head -n 1)"
    name="${missing%%[<>=!~;\[ ]*}"
    if [ -z "$name" ] || compgen -G "$DEST/$(echo "$name" | tr '-' '_')-*-none-any.whl" >/dev/null \
        || compgen -G "$DEST/$name-*-none-any.whl" >/dev/null; then
        cat "$log" >&2
        echo "pi-wheels.sh: no wheel for ${missing:-a requirement} that works on $PLATFORM" >&2
        exit 1
    fi
    echo "pi-wheels.sh: $missing has no wheel to download: building it here (pure Python)" >&2
    "$PYTHON" -m pip wheel --no-deps --disable-pip-version-check --quiet -w "$DEST" "$missing"
    built="$(find "$DEST" -iname "$(echo "$name" | tr '-' '_')-*.whl" -o -iname "$name-*.whl" | head -n 1)"
    case "$built" in
        *-none-any.whl) ;;
        *) echo "pi-wheels.sh: $missing is not pure Python (built ${built:-nothing}); build its wheel on a Pi" >&2
           exit 1 ;;
    esac
done
cat "$log" >&2
echo "pi-wheels.sh: gave up after 8 packages without wheels" >&2
exit 1
