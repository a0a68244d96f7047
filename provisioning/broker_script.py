"""``install-broker.sh``: puts what ``export`` wrote in place on the broker host.

Run as root on the broker host: ``sudo sh REGISTRY/install-broker.sh``.  It
copies the Mosquitto files (group ``mosquitto``, which Mosquitto 2 needs: it
drops root before reading them), the coturn config (group ``turnserver``),
the dashboard and the Caddyfile; restarts a service whose config changed and
otherwise reloads Mosquitto (SIGHUP: new users, passwords and grants).
``PEERCAM_DESTDIR`` installs below another root and ``PEERCAM_SYSTEMCTL``
replaces systemctl (both for tests).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .registry import Settings


def render_install_script(settings: Settings, root: Path, *, dashboard: bool) -> str:
    q = shlex.quote
    src = str(root.resolve())
    mdir = settings.mosquitto_dir.rstrip("/")
    lines = [
        "#!/bin/sh",
        "# Install the files of `peercam provision export` on this broker host.",
        f"#   sudo sh {q(src + '/install-broker.sh')}",
        "# Generated: re-run export to refresh it. Safe to run again.",
        "set -eu",
        'D="${PEERCAM_DESTDIR:-}"',
        'SYSTEMCTL="${PEERCAM_SYSTEMCTL:-systemctl}"',
        f"SRC={q(src)}",
        "",
        "# owner and group only when root (a test as a normal user checks modes)",
        'own() { if [ "$(id -u)" = 0 ]; then echo "-o root -g $1"; fi; }',
        "# changed SRC DEST: true when DEST is missing or differs",
        'changed() { ! cmp -s "$1" "$2"; }',
        "# keep a copy of a config file that is not ours (Debian's default, your own)",
        "backup() {",
        '    if [ -f "$1" ] && ! grep -q "peercam provision" "$1"; then',
        '        cp -p "$1" "$1.before-peercam"',
        '        echo "kept the previous $1 as $1.before-peercam"',
        "    fi",
        "}",
        "",
        "# --- Mosquitto: password file, ACL, certificate (group mosquitto), listeners",
        f'M="$D"{q(mdir)}',
        "RESTART=0",
        "# shellcheck disable=SC2046",
        'install -d -m 0750 $(own mosquitto) "$M"',
        "for f in passwd acl; do",
        "    # shellcheck disable=SC2046",
        '    install -m 0640 $(own mosquitto) "$SRC/mosquitto/$f" "$M/$f"',
        "done",
        'if [ -d "$SRC/mosquitto/tls" ]; then',
        "    # shellcheck disable=SC2046",
        '    install -d -m 0750 $(own mosquitto) "$M/tls"',
        "    for f in server.crt server.key; do",
        '        if changed "$SRC/mosquitto/tls/$f" "$M/tls/$f"; then',
        "            # shellcheck disable=SC2046",
        '            install -m 0640 $(own mosquitto) "$SRC/mosquitto/tls/$f" "$M/tls/$f"',
        "            RESTART=1",
        "        fi",
        "    done",
        "fi",
        'install -d -m 0755 "$D/etc/mosquitto/conf.d"',
        'if changed "$SRC/mosquitto/peercam.conf" "$D/etc/mosquitto/conf.d/peercam.conf"; then',
        '    install -m 0644 "$SRC/mosquitto/peercam.conf" "$D/etc/mosquitto/conf.d/peercam.conf"',
        "    RESTART=1",
        "fi",
        'if [ "$RESTART" = 1 ]; then',
        "    $SYSTEMCTL restart mosquitto  # new listeners or certificate",
        "else",
        "    $SYSTEMCTL reload-or-restart mosquitto  # SIGHUP: users, passwords, grants",
        "fi",
    ]
    if settings.turn_host:
        lines += [
            "",
            "# --- coturn (the file holds the shared secret)",
            'if changed "$SRC/coturn/turnserver.conf" "$D/etc/turnserver.conf"; then',
            '    backup "$D/etc/turnserver.conf"',
            "    # shellcheck disable=SC2046",
            '    install -m 0640 $(own turnserver) "$SRC/coturn/turnserver.conf" '
            '"$D/etc/turnserver.conf"',
            "    $SYSTEMCTL restart coturn",
            "fi",
        ]
    if dashboard:
        www = settings.www_dir.rstrip("/")
        lines += [
            "",
            "# --- the dashboard (public files) and Caddy",
            f'W="$D"{q(www)}',
            'rm -rf "$W.new" && install -d -m 0755 "$W.new"',
            'cp -R "$SRC/www/." "$W.new/" && chmod -R a+rX,go-w "$W.new"',
            'rm -rf "$W" && mv "$W.new" "$W"',
        ]
        if settings.web_proxy:
            lines += [
                'install -d -m 0755 "$D/etc/caddy"',
                'if changed "$SRC/caddy/Caddyfile" "$D/etc/caddy/Caddyfile"; then',
                '    backup "$D/etc/caddy/Caddyfile"',
                '    install -m 0644 "$SRC/caddy/Caddyfile" "$D/etc/caddy/Caddyfile"',
                "    $SYSTEMCTL reload-or-restart caddy",
                "fi",
            ]
    lines += ["", 'echo "peercam broker files installed"']
    return "\n".join(lines) + "\n"
