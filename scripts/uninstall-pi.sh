#!/usr/bin/env bash
# Remove what scripts/install-pi.sh installed.
#
#   sudo scripts/uninstall-pi.sh            # stop and remove the service and /opt/peercam
#   sudo scripts/uninstall-pi.sh --purge    # also /etc/peercam (secrets!), /var/lib/peercam, the user,
#                                           # the groups install-pi.sh created, peercam.service.d drop-ins
#   scripts/uninstall-pi.sh --dry-run       # print what would be done
#
# Debian packages stay (other software may use them). Safe to run twice.
set -euo pipefail

PREFIX=/opt/peercam
ETC=/etc/peercam
STATE=/var/lib/peercam
UNIT=/etc/systemd/system/peercam.service
DROPINS=/etc/systemd/system/peercam.service.d
SERVICE_USER=peercam
PURGE=0
DRY_RUN=0

while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1; shift ;;
        --dry-run|-n) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall-pi.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall-pi.sh: run as root, or try --dry-run" >&2
    exit 1
fi

if [ -f "$UNIT" ] || systemctl list-unit-files peercam.service 2>/dev/null | grep -q peercam; then
    say "stopping and removing the service"
    run systemctl disable --now peercam.service || true
    # With the daemon stopped, take the device out of Home Assistant (empty retained
    # discovery configs); best effort: an unreachable broker must not stop the uninstall.
    if [ -x "$PREFIX/venv/bin/peercam" ] && [ -f "$ETC/peercam.toml" ] \
        && grep -Eq '^[[:space:]]*\[homeassistant\]' "$ETC/peercam.toml"; then
        say "removing the device from Home Assistant (peercam ha-remove)"
        run timeout 20 "$PREFIX/venv/bin/peercam" ha-remove --config "$ETC/peercam.toml" \
            || say "warning: peercam ha-remove failed; its entities stay in Home Assistant until removed there"
    fi
    run rm -f "$UNIT"
    run systemctl daemon-reload
    run systemctl reset-failed peercam.service || true
fi
if [ -d "$PREFIX" ]; then
    say "removing $PREFIX"
    run rm -rf "$PREFIX"
fi
if [ "$PURGE" = 1 ]; then
    # Groups install-pi.sh had to create (gpio off a Pi); read before $ETC goes.
    created=()
    if [ -f "$ETC/created-groups" ]; then
        mapfile -t created < <(sort -u "$ETC/created-groups")
    fi
    if [ -d "$DROPINS" ]; then
        say "removing $DROPINS (your drop-ins for the service)"
        run rm -rf "$DROPINS"
        run systemctl daemon-reload
    fi
    for dir in "$ETC" "$STATE"; do
        if [ -d "$dir" ]; then
            say "removing $dir"
            run rm -rf "$dir"
        fi
    done
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        say "removing the user $SERVICE_USER"
        run userdel "$SERVICE_USER"
    fi
    for group in "${created[@]}"; do
        getent group "$group" >/dev/null || continue
        members="$(getent group "$group" | cut -d: -f4)"
        if [ -z "$members" ] || [ "$members" = "$SERVICE_USER" ]; then
            say "removing the group $group (install-pi.sh created it)"
            run groupdel "$group"
        else
            say "kept the group $group: install-pi.sh created it, but $members use it now"
        fi
    done
else
    [ -d "$ETC" ] && say "kept $ETC (config and secrets); --purge removes it"
    [ -d "$DROPINS" ] && say "kept $DROPINS (your drop-ins); --purge removes it"
fi
say "peercam removed"
