"""``peercam provision`` without a broker: hashes, registry rules, generated text, file modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from peercam.config import load_config
from peercam.provisioning.bundle import _toml
from peercam.provisioning.cli import main as provision_main
from peercam.provisioning.coturn import DENIED_PEER_RANGES, ice_server_urls
from peercam.provisioning.passwd import (
    PasswordHashError,
    hash_password,
    parse_passwd,
    verify_password,
)
from peercam.provisioning.registry import Registry
from tests.provisioned import ProvisionFailed, Site


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = Site(tmp_path)
    site.provision("init", "--broker", "mqtts://broker.lan:8883", "--turn-host", "turn.lan")
    return site


# --- password hashes -------------------------------------------------------------------------


def test_hash_format_is_mosquittos_pbkdf2_sha512() -> None:
    stored = hash_password("correct horse", iterations=101, salt=b"0123456789ab")
    kind, iterations, salt, digest = stored.split("$")[1:]
    assert (kind, iterations, salt) == ("7", "101", "MDEyMzQ1Njc4OWFi")
    assert len(digest) == 88  # 64 bytes, base64 with padding
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)


def test_hashes_agree_with_mosquitto_passwd(tmp_path: Path) -> None:
    """mosquitto_passwd's hash verifies with our code (the other way round: the broker tests)."""
    path = tmp_path / "passwd"
    path.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(path), "alice", "s3cret pass"], check=True)
    stored = parse_passwd(path.read_text())["alice"]
    assert stored.startswith("$7$")
    assert verify_password("s3cret pass", stored)
    assert not verify_password("s3cret pasS", stored)


@pytest.mark.parametrize("bad", ["$6$abc$def", "$7$0$AAAA$BBBB", "plaintext", "$7$101$!!$??"])
def test_malformed_hashes_are_refused(bad: str) -> None:
    with pytest.raises(PasswordHashError):
        verify_password("x", bad)


# --- the registry ------------------------------------------------------------------------------


def test_ids_are_checked_and_unique_across_devices_and_viewers(site: Site) -> None:
    site.add_device("frontdoor")
    for args, message in [
        (("device", "add", "Front Door"), "not valid"),
        (("device", "add", "back\n"), "not valid"),  # re's $ would let a final newline in
        (("viewer", "add", "alice\n", "--device", "frontdoor"), "not valid"),
        (("device", "add", "side", "--name", "Side\x7fdoor"), "control characters"),
        (("init", "--prefix", "peercam/"), "no leading or trailing '/'"),
        (("init", "--listen-address", "127.0.0.1\nallow_anonymous true"), "newlines"),
        (("init", "--listen-address", "localhost"), "does not appear to be an IPv4"),
        (("init", "--turn-external-ip", "1.2.3.4/10.0.0.1/x"), "does not appear to be"),
        (("init", "--public-host", "broker.example.net\n  reverse_proxy"), "newlines"),
        (("device", "add", "frontdoor"), "already a device"),
        (("viewer", "add", "frontdoor", "--device", "frontdoor"), "already a device"),
        (("viewer", "add", "alice", "--device", "backdoor"), "no device 'backdoor'"),
        (("viewer", "add", "alice", "--device", "frontdoor", "--password", "short"), "8"),
        (("grant", "nobody", "frontdoor"), "no viewer 'nobody'"),
        (("device", "add", "x", "--broker", "http://broker"), "must look like"),
    ]:
        with pytest.raises(ProvisionFailed, match=message):
            site.provision(*args)
        site.provision(*args, expect=2)  # a wrong request: exit code 2, nothing written
    assert list(Registry.open(site.registry).data.devices) == ["frontdoor"]
    assert Registry.open(site.registry).data.viewers == {}


def test_grant_revoke_and_removals_keep_the_registry_consistent(site: Site) -> None:
    site.add_device("frontdoor")
    site.add_device("backdoor")
    site.add_viewer("alice", "frontdoor")
    assert "may now watch" in site.provision("grant", "alice", "backdoor")
    assert "already" in site.provision("grant", "alice", "backdoor")
    reg = Registry.open(site.registry)
    assert reg.data.viewers["alice"].devices == ["backdoor", "frontdoor"]
    assert "no longer" in site.provision("revoke", "alice", "frontdoor")
    assert "anyway" in site.provision("revoke", "alice", "frontdoor")
    site.provision("device", "remove", "backdoor")
    reg = Registry.open(site.registry)
    assert reg.data.viewers["alice"].devices == []
    assert not site.bundle_dir("backdoor").exists()  # its secrets are gone too
    site.provision("viewer", "remove", "alice")
    assert Registry.open(site.registry).data.viewers == {}
    listing = site.provision("list")
    assert "frontdoor" in listing and "alice" not in listing


def test_no_device_without_a_broker_url(tmp_path: Path) -> None:
    site = Site(tmp_path)
    with pytest.raises(ProvisionFailed, match="no broker URL"):
        site.provision("device", "add", "frontdoor")
    assert not (site.registry / "devices" / "frontdoor").exists()
    site.provision("device", "add", "frontdoor", "--broker", "mqtt://10.0.0.2:1883")


# --- secrets -----------------------------------------------------------------------------------


def test_secrets_are_0600_and_never_printed(site: Site) -> None:
    site.add_device("frontdoor")
    outputs = [site.provision("device", "password", "frontdoor")]
    site.passwords["frontdoor"] = site.bundle_file("frontdoor", "mqtt-password").read_text().strip()
    alice = site.add_viewer("alice", "frontdoor")
    outputs += [
        site.provision("list"),
        site.export(),
        site.provision("grant", "alice", "frontdoor"),
    ]
    outputs.append(
        site.provision(
            "viewer", "add", "bob", "--device", "frontdoor", "--password", "bobs-password"
        )
    )
    turn_secret = (site.registry / "secrets" / "turn-secret").read_text().strip()
    for output in outputs:
        assert site.passwords["frontdoor"] not in output
        assert turn_secret not in output
        assert alice not in output
        assert "bobs-password" not in output
    # Files holding a secret are 0600; the registry folder is 0700.
    assert mode(site.registry) == 0o700
    for path in (
        site.registry / "registry.json",
        site.registry / "secrets" / "turn-secret",
        site.bundle_file("frontdoor", "mqtt-password"),
        site.bundle_file("frontdoor", "turn-secret"),
        site.registry / "mosquitto" / "passwd",
        site.registry / "coturn" / "turnserver.conf",
    ):
        assert mode(path) == 0o600, path
    # Viewer passwords exist nowhere in clear; device passwords only in their bundle.
    for path in site.registry.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert alice not in text and "bobs-password" not in text, path
            if path.name != "mqtt-password":
                assert site.passwords["frontdoor"] not in text, path


def test_secret_files_are_0600_even_with_a_permissive_umask(site: Site) -> None:
    old = os.umask(0)
    try:
        site.add_device("frontdoor")
    finally:
        os.umask(old)
    assert mode(site.bundle_file("frontdoor", "mqtt-password")) == 0o600
    assert mode(site.bundle_file("frontdoor", "peercam.toml")) == 0o644


def test_a_registry_made_by_its_first_device_is_0700_too(tmp_path: Path) -> None:
    """No ``init`` first: the folder that holds every secret must still be private."""
    registry = tmp_path / "registry"
    old = os.umask(0o022)
    try:
        rc = provision_main(
            [
                "--registry",
                str(registry),
                "device",
                "add",
                "cam1",
                "--broker",
                "mqtt://b.example:1883",
            ]
        )
    finally:
        os.umask(old)
    assert rc == 0
    assert mode(registry) == 0o700


def test_any_printable_device_name_makes_a_config_the_daemon_loads(site: Site) -> None:
    name = 'Café "front" door \\ 門 \u00a0ünïcode'
    site.provision("device", "add", "cafe", "--name", name)
    assert load_config(site.bundle_file("cafe", "peercam.toml")).device.name == name
    assert _toml("a\x7fb") == '"a\\u007fb"'  # TOML wants DEL escaped (JSON does not)


def test_a_hand_edited_registry_with_a_bad_id_is_refused_clearly(site: Site) -> None:
    site.add_device("frontdoor")
    path = site.registry / "registry.json"
    data = json.loads(path.read_text())
    data["devices"]["back\n"] = data["devices"]["frontdoor"]
    path.write_text(json.dumps(data))
    with pytest.raises(
        ProvisionFailed, match=r"device id 'back\\n' is not valid \(edited by hand\?\)"
    ):
        site.provision("export")


def test_generated_password_is_printed_once(site: Site) -> None:
    site.add_device("frontdoor")
    out = site.provision("viewer", "add", "alice", "--device", "frontdoor")
    password = out.split("password: ", 1)[1].split()[0]
    assert out.count(password) == 1 and len(password) >= 20
    stored = Registry.open(site.registry).data.viewers["alice"].password_hash
    assert verify_password(password, stored)
    out = site.provision("viewer", "password", "alice")
    new = out.split("password: ", 1)[1].split()[0]
    assert new != password
    stored = Registry.open(site.registry).data.viewers["alice"].password_hash
    assert verify_password(new, stored) and not verify_password(password, stored)


# --- generated files -----------------------------------------------------------------------------


def test_acl_is_the_protocols_trust_model(site: Site) -> None:
    site.add_device("frontdoor")
    site.add_device("backdoor")
    site.add_viewer("alice", "frontdoor", "backdoor")
    site.add_viewer("mallory", "backdoor")
    site.export()
    acl = [
        line
        for line in (site.registry / "mosquitto" / "acl").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert acl == [
        "user backdoor",
        "topic read peercam/backdoor/in/+",
        "topic write peercam/backdoor/#",
        "user frontdoor",
        "topic read peercam/frontdoor/in/+",
        "topic write peercam/frontdoor/#",
        "user alice",
        "topic write peercam/backdoor/in/alice",
        "topic read peercam/backdoor/out/alice",
        "topic read peercam/backdoor/status",
        "topic read peercam/backdoor/events",
        "topic read peercam/backdoor/calls",
        "topic read peercam/backdoor/snapshot/#",
        "topic read peercam/backdoor/clips",
        "topic read peercam/backdoor/thumb/#",
        "topic write peercam/frontdoor/in/alice",
        "topic read peercam/frontdoor/out/alice",
        "topic read peercam/frontdoor/status",
        "topic read peercam/frontdoor/events",
        "topic read peercam/frontdoor/calls",
        "topic read peercam/frontdoor/snapshot/#",
        "topic read peercam/frontdoor/clips",
        "topic read peercam/frontdoor/thumb/#",
        "user mallory",
        "topic write peercam/backdoor/in/mallory",
        "topic read peercam/backdoor/out/mallory",
        "topic read peercam/backdoor/status",
        "topic read peercam/backdoor/events",
        "topic read peercam/backdoor/calls",
        "topic read peercam/backdoor/snapshot/#",
        "topic read peercam/backdoor/clips",
        "topic read peercam/backdoor/thumb/#",
    ]
    assert not any(line.startswith("pattern") for line in acl)
    users = parse_passwd((site.registry / "mosquitto" / "passwd").read_text())
    assert sorted(users) == ["alice", "backdoor", "frontdoor", "mallory"]
    assert verify_password(site.passwords["alice"], users["alice"])
    assert verify_password(site.passwords["frontdoor"], users["frontdoor"])


def test_listener_snippet_follows_the_tls_and_plain_settings(site: Site) -> None:
    conf_path = site.registry / "mosquitto" / "peercam.conf"
    site.export()
    conf = conf_path.read_text()
    # no certificate yet: plain listeners only, and a warning that devices want mqtts
    assert "listener 1883\n" in conf and "listener 8083\n" in conf
    assert "listener 8883" not in conf
    assert "allow_anonymous false" in conf
    assert "password_file /etc/mosquitto/peercam/passwd" in conf
    assert "acl_file /etc/mosquitto/peercam/acl" in conf
    site.provision("tls", "--host", "broker.lan")
    out = site.export()
    conf = conf_path.read_text()
    assert "listener 8883\n" in conf and "listener 8084\n" in conf
    assert "listener 1883" not in conf and "listener 8083" not in conf  # TLS only now
    assert conf.count("certfile /etc/mosquitto/peercam/tls/server.crt") == 2
    assert "protocol websockets" in conf
    assert "warning" not in out
    site.provision("init", "--plain", "--one-connection-per-user")
    site.export()
    conf = conf_path.read_text()
    assert "listener 1883\n" in conf and "listener 8883\n" in conf
    assert conf.count("use_username_as_clientid true") == 4


def test_web_proxy_gets_a_local_listener_a_caddyfile_and_a_same_origin_dashboard(
    site: Site,
) -> None:
    site.provision("init", "--web-proxy", "--public-host", "broker.example.net")
    site.provision("tls", "--host", "broker.example.net")
    out = site.export()
    conf = (site.registry / "mosquitto" / "peercam.conf").read_text()
    assert "listener 9001 127.0.0.1\nprotocol websockets\n" in conf
    assert "http_dir" not in conf
    caddyfile = (site.registry / "caddy" / "Caddyfile").read_text()
    assert "broker.example.net {" in caddyfile
    assert "reverse_proxy /mqtt 127.0.0.1:9001" in caddyfile
    assert "root * /var/www/peercam" in caddyfile and "file_server" in caddyfile
    assert "tls internal" not in caddyfile  # a public name: Let's Encrypt
    config = json.loads((site.registry / "www" / "config.json").read_text())
    # same origin as the page, whatever name the phone used to reach it
    assert config == {"broker_url": "wss://{host}/mqtt", "topic_prefix": "peercam"}
    assert (site.registry / "www" / "index.html").is_file()
    assert "install-broker.sh" in out
    assert "/etc/caddy/Caddyfile" in (site.registry / "install-broker.sh").read_text()


def test_turnserver_conf_denies_inward_relaying(site: Site) -> None:
    site.provision("init", "--turn-allow-peer", "192.168.1.0/24")
    site.add_device("frontdoor")
    site.export()
    conf = (site.registry / "coturn" / "turnserver.conf").read_text()
    secret = (site.registry / "secrets" / "turn-secret").read_text().strip()
    assert len(secret) >= 40
    lines = conf.splitlines()
    assert "use-auth-secret" in lines
    assert f"static-auth-secret={secret}" in lines
    assert "no-multicast-peers" in lines and "no-cli" in lines and "no-tcp-relay" in lines
    assert "min-port=49160" in lines and "max-port=49400" in lines
    denied = {line.split("=", 1)[1] for line in lines if line.startswith("denied-peer-ip=")}
    for needed in (
        "10.0.0.0-10.255.255.255",
        "127.0.0.0-127.255.255.255",
        "169.254.0.0-169.254.255.255",
        "172.16.0.0-172.31.255.255",
        "192.168.0.0-192.168.255.255",
        "100.64.0.0-100.127.255.255",
        "224.0.0.0-239.255.255.255",
        "::1",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:0.0.0.0-::ffff:255.255.255.255",
    ):
        assert needed in denied, needed
    assert len(denied) == len(DENIED_PEER_RANGES)
    assert "allowed-peer-ip=192.168.1.0-192.168.1.255" in lines
    # The device's bundle carries the same secret and the TURN URLs, and nothing else.
    bundle_secret = site.bundle_file("frontdoor", "turn-secret").read_text().strip()
    assert bundle_secret == secret
    reg = Registry.open(site.registry)
    assert ice_server_urls(reg.settings) == [
        "stun:turn.lan:3478",
        "turn:turn.lan:3478?transport=udp",
        "turn:turn.lan:3478?transport=tcp",
    ]


# --- the device bundle ---------------------------------------------------------------------


def test_bundle_loads_with_the_daemons_own_config_loader(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.init("--turn-host", "turn.lan")
    site.provision("tls", "--host", "127.0.0.1")
    site.add_device("frontdoor", "--broker", "mqtts://broker.lan:8883")
    site.export()
    config = load_config(site.bundle_file("frontdoor", "peercam.toml"))
    assert config.device.id == "frontdoor" and config.device.name == "Frontdoor"
    assert config.mqtt.url == "mqtts://broker.lan:8883" and config.mqtt.tls
    assert config.mqtt.username == "frontdoor"
    assert config.read_mqtt_password() == site.passwords["frontdoor"]
    assert (
        config.read_turn_secret() == (site.registry / "secrets" / "turn-secret").read_text().strip()
    )
    assert Path(config.mqtt.ca_file).read_text() == site.ca_file.read_text()
    assert config.webrtc.ice_servers[0] == "stun:turn.lan:3478"
    assert config.webrtc.host_networks == ["127.0.0.1/32"]
    assert config.camera.source == "test-pattern"


def test_bundle_for_the_pi_points_at_etc_peercam(site: Site) -> None:
    site.provision("device", "add", "frontdoor", "--name", "Front door")
    text = site.bundle_file("frontdoor", "peercam.toml").read_text()
    assert 'password_file = "/etc/peercam/mqtt-password"' in text
    assert 'turn_secret_file = "/etc/peercam/turn-secret"' in text
    assert 'source = "picamera2"' in text
    assert 'name = "Front door"' in text


def test_provision_is_a_peercam_subcommand(tmp_path: Path) -> None:
    registry = tmp_path / "reg"
    done = subprocess.run(
        [sys.executable, "-m", "peercam", "provision", "--registry", str(registry), "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "devices (0)" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "peercam", "provision", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "viewer add alice --device frontdoor" in done.stdout


def test_install_broker_script_places_files_and_is_idempotent(tmp_path: Path) -> None:
    """install-broker.sh into a scratch root (PEERCAM_DESTDIR), systemctl replaced by a log."""
    site = Site(tmp_path / "site")
    site.provision(
        "init",
        "--broker",
        "mqtts://broker.example.net:8883",
        "--public-host",
        "broker.example.net",
        "--web-proxy",
        "--turn-host",
        "broker.example.net",
    )
    site.provision("tls", "--host", "broker.example.net")
    site.add_device("frontdoor")
    site.add_viewer("alice", "frontdoor")
    site.export()
    script = site.registry / "install-broker.sh"
    assert mode(script) == 0o700
    shellcheck = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert shellcheck.returncode == 0, shellcheck.stdout
    dest = tmp_path / "root"
    calls = tmp_path / "systemctl.log"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PEERCAM_DESTDIR": str(dest), "PEERCAM_SYSTEMCTL": str(fake)}

    def run() -> list[str]:
        calls.write_text("")
        done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return calls.read_text().splitlines()

    (dest / "etc/caddy").mkdir(parents=True)
    (dest / "etc/caddy/Caddyfile").write_text(":80 {\n\troot * /usr/share/caddy\n}\n")
    assert run() == ["restart mosquitto", "restart coturn", "reload-or-restart caddy"]
    assert "/usr/share/caddy" in (dest / "etc/caddy/Caddyfile.before-peercam").read_text()
    m = dest / "etc/mosquitto/peercam"
    for path, want in (
        (m, 0o750),
        (m / "passwd", 0o640),
        (m / "acl", 0o640),
        (m / "tls/server.key", 0o640),
        (dest / "etc/turnserver.conf", 0o640),
        (dest / "etc/mosquitto/conf.d/peercam.conf", 0o644),
        (dest / "etc/caddy/Caddyfile", 0o644),
        (dest / "var/www/peercam/index.html", 0o644),
    ):
        assert mode(path) == want, path
    if os.geteuid() == 0:  # ownership needs root; the modes above are checked either way
        import grp

        assert grp.getgrgid(m.stat().st_gid).gr_name == "mosquitto"
        assert grp.getgrgid((m / "passwd").stat().st_gid).gr_name == "mosquitto"
        turn_conf = dest / "etc/turnserver.conf"
        assert grp.getgrgid(turn_conf.stat().st_gid).gr_name == "turnserver"
    assert (m / "passwd").read_text() == (site.registry / "mosquitto/passwd").read_text()
    # Nothing changed: only a reload (SIGHUP), no restarts.
    assert run() == ["reload-or-restart mosquitto"]
    # A new viewer: still only a reload; the broker re-reads users and ACL.
    site.add_viewer("bob", "frontdoor")
    site.export()
    assert run() == ["reload-or-restart mosquitto"]
    assert "user bob" in (m / "acl").read_text()
