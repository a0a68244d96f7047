"""The broker locked down by ``peercam provision``: real Mosquitto, real daemon, real viewers.

Every test starts Mosquitto with the password file, ACL and listener snippet
that ``peercam provision export`` wrote, runs the daemon from the device's
generated bundle, and acts as enrolled (and not enrolled) parties.  Each
"cannot" is checked twice: the party does not get what it should not, and
the broker's own log shows it refused (or a positive control in the same
window shows the message would have arrived had it been allowed).

Parties: devices ``frontdoor`` and ``backdoor``; viewers ``alice`` and ``bob``
(granted frontdoor), ``mallory`` (granted backdoor only).
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError

from tests.daemon_proc import DaemonProcess, attach_log
from tests.provisioned import Site, Spy
from tests.viewer import Viewer
from tests.waiting import wait_until

PREFIX = "peercam"
FD = f"{PREFIX}/frontdoor"


def make_site(root: Path, *init_extra: str) -> Site:
    site = Site(root)
    site.init(*init_extra)
    site.provision("tls", "--host", "localhost", "--host", "127.0.0.1")
    site.add_device("frontdoor")
    site.add_device("backdoor")
    site.add_viewer("alice", "frontdoor")
    site.add_viewer("bob", "frontdoor")
    site.add_viewer("mallory", "backdoor")
    site.export()
    return site


@pytest.fixture
async def site(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    site = make_site(tmp_path)
    broker = site.start_broker()
    attach_log(request.node, "mosquitto log", broker.log_text)
    yield site
    broker.stop()


@pytest.fixture
async def run_daemon(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., asyncio.Future[DaemonProcess]]]:
    """Start the daemon with a device's generated bundle config (test camera swapped in)."""
    daemons: list[DaemonProcess] = []

    async def start(site: Site, device: str = "frontdoor", **overrides: dict) -> DaemonProcess:
        config = site.bundle_config(device, **overrides)
        daemon = DaemonProcess(
            config,
            tmp_path / f"daemon-{len(daemons)}-{device}",
            status_auth=("alice", site.passwords["alice"]),
        )
        daemons.append(daemon)
        attach_log(request.node, f"daemon {device} log", daemon.log_text)
        daemon.start()
        return daemon

    yield start  # type: ignore[misc]
    for daemon in daemons:
        if daemon.running:
            await daemon.terminate()
        daemon.assert_no_traceback()


async def viewer(site: Site, viewer_id: str, device: str = "frontdoor", **kw: object) -> Viewer:
    v = Viewer(
        site.url, device=device, viewer_id=viewer_id, password=site.passwords[viewer_id], **kw
    )
    return await v.connect()


async def peercam_check(config: Path) -> subprocess.CompletedProcess[str]:
    """``peercam check --config FILE`` in a subprocess (off the event loop)."""
    command = [sys.executable, "-m", "peercam", "check", "--config", str(config)]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=90
    )


# --- a granted viewer watches ------------------------------------------------------------


async def test_granted_viewer_watches_the_daemon_run_from_its_bundle(
    site: Site, run_daemon: Callable
) -> None:
    daemon = await run_daemon(site)
    await daemon.wait_online(30)
    alice = await viewer(site, "alice")
    try:
        status = await alice.wait_status(state="online", timeout=10)
        assert status["name"] == "Frontdoor"
        watch = await alice.watch()
        await watch.wait_frames(15, timeout=30)
        await watch.bye()
    finally:
        await alice.close()


async def test_peercam_check_loads_a_bundle_and_reaches_the_broker(site: Site) -> None:
    """`peercam check` on the generated bundle, as-is: config valid, secrets read, broker OK."""
    config = site.bundle_file("frontdoor", "peercam.toml")
    done = await peercam_check(config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "secrets readable" in done.stdout
    # The same bundle with a wrong password is refused by the broker, and check says so.
    (site.bundle_file("frontdoor", "mqtt-password")).write_text("not-the-password\n")
    done = await peercam_check(config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refused user 'frontdoor'" in done.stdout + done.stderr


# --- who may see what ----------------------------------------------------------------------


async def test_viewer_not_granted_sees_no_status_and_gets_no_answer(
    site: Site, run_daemon: Callable
) -> None:
    daemon = await run_daemon(site)
    await daemon.wait_online(30)
    mallory = await viewer(site, "mallory")  # enrolled, but for backdoor only
    alice = await viewer(site, "alice")
    try:
        async with Spy(site, "mallory", site.passwords["mallory"]) as spy:
            await spy.subscribe("#", f"{PREFIX}/+/status", "$SYS/#")
            await mallory.send({"type": "hello", "session": "mallory-session-1"})
            # Positive control, after mallory's hello: alice (granted) is answered.
            await alice.wait_status(state="online", timeout=10)
            await alice.send({"type": "hello", "session": "alice-session-1"})
            welcome = await alice.expect_reply("alice-session-1", "welcome", timeout=10)
            assert welcome["type"] == "welcome"
            await asyncio.sleep(1.0)  # anything in flight to mallory would have arrived
            assert mallory.statuses == []
            assert mallory.pending() == [], "mallory got an answer"
            assert [t for t in spy.topics() if t.startswith((FD, "$SYS"))] == []
            await wait_until(
                lambda: site.denied_publishes("mallory", f"{FD}/in/mallory") >= 1,
                "the broker's log of mallory's denied hello",
                10,
            )
            assert "mallory" not in daemon.log_text()
    finally:
        await mallory.close()
        await alice.close()


async def test_viewer_cannot_read_another_viewers_out_nor_write_its_in(
    site: Site, run_daemon: Callable
) -> None:
    daemon = await run_daemon(site)
    await daemon.wait_online(30)
    alice = await viewer(site, "alice")
    try:
        async with Spy(site, "bob", site.passwords["bob"], client_id="bob-spy") as bob:
            await bob.subscribe(f"{FD}/out/alice", f"{FD}/out/+", f"{FD}/in/+", "#")
            # bob forges a hello as alice: the broker drops it, the device never answers it.
            await bob.publish(
                f"{FD}/in/alice", {"v": 1, "type": "hello", "session": "forged-by-bob"}
            )
            # alice's real session: hello, welcome, offer, answer, media.
            watch = await alice.watch()
            await watch.wait_frames(5, timeout=30)
            await asyncio.sleep(0.5)
            assert not [t for t in bob.topics() if "/out/alice" in t or "/in/" in t], bob.topics()
            assert all(m.get("session") != "forged-by-bob" for m in alice.pending())
            assert all(m.get("session") != "forged-by-bob" for _, m in alice.received)
            await wait_until(
                lambda: site.denied_publishes("bob-spy", f"{FD}/in/alice") == 1,
                "the broker's log of bob's forged hello",
                10,
            )
            await watch.bye()
    finally:
        await alice.close()


async def test_viewer_cannot_publish_status_events_calls_or_snapshots(
    site: Site, run_daemon: Callable
) -> None:
    daemon = await run_daemon(site)
    await daemon.wait_online(30)
    alice = await viewer(site, "alice")
    try:
        await alice.wait_status(state="online", timeout=10)
        async with (
            Spy(site, "alice", site.passwords["alice"], client_id="alice-reader") as reader,
            Spy(site, "bob", site.passwords["bob"], client_id="bob-forger") as bob,
        ):
            await reader.subscribe(f"{FD}/#")
            fake_status = {"v": 1, "type": "status", "state": "offline", "name": "forged"}
            forged = {
                f"{FD}/status": fake_status,
                f"{FD}/events": {"v": 1, "type": "call", "call": "forged-call-1", "expires_in": 30},
                f"{FD}/calls": {"v": 1, "calls": ["forged"]},
                f"{FD}/snapshot/forged-call-1": b"\xff\xd8forged",
                f"{FD}/out/alice": {"v": 1, "type": "bye", "session": "*", "reason": "shutdown"},
                f"{PREFIX}/backdoor/status": fake_status,
            }
            for topic, message in forged.items():
                await bob.publish(topic, message, retain=topic.endswith("status"))
            await wait_until(
                lambda: all(site.denied_publishes("bob-forger", t) == 1 for t in forged),
                f"denied publishes for {list(forged)}",
                10,
            )
            await asyncio.sleep(0.5)
            assert not [m for m in alice.statuses if m.get("name") == "forged"]
            assert alice.events == []
            assert [p for t, p, _ in reader.received if b"forged" in p] == []
        # A fresh subscriber still gets the device's own retained status.
        late = await viewer(site, "alice", client_id="alice-late")
        try:
            status = await late.wait_status(timeout=10)
            assert status["state"] == "online" and status["name"] == "Frontdoor"
        finally:
            await late.close()
    finally:
        await alice.close()


async def test_device_cannot_read_another_devices_inbox_nor_speak_for_it(
    site: Site, run_daemon: Callable
) -> None:
    daemon = await run_daemon(site)
    await daemon.wait_online(30)
    alice = await viewer(site, "alice")
    try:
        async with Spy(
            site, "backdoor", site.passwords["backdoor"], client_id="backdoor-spy"
        ) as backdoor:
            await backdoor.subscribe(f"{FD}/in/+", f"{PREFIX}/+/in/+", f"{FD}/#", "#")
            await alice.send({"type": "hello", "session": "alice-session-2"})
            await alice.expect_reply("alice-session-2", "welcome", timeout=10)  # control
            # backdoor tries to answer for frontdoor, and to take its status.
            await backdoor.publish(
                f"{FD}/out/alice", {"v": 1, "type": "bye", "session": "alice-session-2"}
            )
            await backdoor.publish(f"{FD}/status", {"v": 1, "state": "offline"}, retain=True)
            await wait_until(
                lambda: (
                    site.denied_publishes("backdoor-spy", f"{FD}/out/alice") == 1
                    and site.denied_publishes("backdoor-spy", f"{FD}/status") == 1
                ),
                "the broker's log of backdoor's forged publishes",
                10,
            )
            await asyncio.sleep(0.5)
            assert [t for t in backdoor.topics() if t.startswith(FD)] == []
            assert all(m.get("type") != "bye" for m in alice.pending())
            # backdoor does read its own inbox (the ACL is not simply "deny all").
            mallory = await viewer(site, "mallory", device="backdoor")
            try:
                await mallory.send({"type": "hello", "session": "mallory-to-back"})
                await wait_until(
                    lambda: f"{PREFIX}/backdoor/in/mallory" in backdoor.topics(),
                    "mallory's hello in backdoor's own inbox",
                    10,
                )
            finally:
                await mallory.close()
    finally:
        await alice.close()


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong-password"),
        ("alice", ""),
        ("frontdoor", "wrong-password"),
        ("nobody", "whatever-password"),
        (None, None),  # anonymous
    ],
)
async def test_wrong_or_missing_credentials_are_refused(
    site: Site, username: str | None, password: str | None
) -> None:
    with pytest.raises(MqttConnectError) as refused:
        async with Spy(site, username, password):
            pass
    # CONNACK "not authorised" (MQTT 3.1.1 code 5), not a network error
    assert "not authorized" in str(refused.value.rc).lower(), refused.value.rc
    # the right password for the same user works (the refusal was about the password)
    if username in site.passwords:
        async with Spy(site, username, site.passwords[username]):
            pass


async def test_revoked_viewer_is_cut_off_after_the_broker_reloads(
    site: Site, run_daemon: Callable
) -> None:
    daemon = await run_daemon(site)
    await daemon.wait_online(30)
    bob = await viewer(site, "bob")
    alice = await viewer(site, "alice")
    try:
        await bob.wait_status(state="online", timeout=10)
        # Revoke bob's grant: his live connection stops receiving, his hello goes nowhere.
        site.provision("revoke", "bob", "frontdoor")
        site.export()
        site.reload_broker()
        await wait_until(
            lambda: "Reloading config" in (site.broker.log_text() if site.broker else ""),
            "mosquitto's reload",
            10,
        )
        seen = len(bob.statuses)
        watch = await alice.watch()  # changes the retained status (viewers: 1)
        await alice.wait_status(lambda s: s.get("viewers") == 1, timeout=15)
        await bob.send({"type": "hello", "session": "bob-after-revoke"})
        await asyncio.sleep(1.0)
        assert len(bob.statuses) == seen, bob.statuses[seen:]
        assert all(m.get("session") != "bob-after-revoke" for m in bob.pending())
        fresh = await viewer(site, "bob", client_id="bob-fresh")
        try:
            await asyncio.sleep(1.0)
            assert fresh.statuses == []  # no retained status for him any more
        finally:
            await fresh.close()
        await watch.bye()

        # Remove bob altogether: the broker disconnects him and refuses him.
        site.provision("viewer", "remove", "bob")
        site.export()
        site.reload_broker()
        await wait_until(lambda: not bob.connected, "bob's disconnection", 15)
        with pytest.raises(MqttConnectError) as refused:
            async with Spy(site, "bob", site.passwords["bob"]):
                pass
        assert "not authorized" in str(refused.value.rc).lower()
        # alice was not affected.
        assert alice.connected
        await alice.send({"type": "hello", "session": "alice-still-here"})
        await alice.expect_reply("alice-still-here", "welcome", timeout=10)
    finally:
        await bob.close()
        await alice.close()


# --- last wills under the ACL ----------------------------------------------------------------


async def test_last_wills_pass_the_acl(site: Site, run_daemon: Callable) -> None:
    """A viewer's will (its own in topic) reaches the device; a device's will sets offline."""
    daemon = await run_daemon(site)
    await daemon.wait_online(30)
    alice = await viewer(site, "alice")
    bob = await viewer(site, "bob")
    try:
        watch = await alice.watch()
        await watch.wait_frames(3, timeout=30)
        await bob.wait_status(lambda s: s.get("viewers") == 1, timeout=15)
        await alice.drop()  # no DISCONNECT: the broker publishes alice's will
        await bob.wait_status(lambda s: s.get("viewers") == 0, timeout=30)
        daemon.kill()  # no clean shutdown: the broker publishes the device's will
        await bob.wait_status(state="offline", timeout=60)
    finally:
        await alice.close()
        await bob.close()


# --- client-id takeover ------------------------------------------------------------------------


async def test_client_id_takeover_and_one_connection_per_user(tmp_path: Path) -> None:
    """Mosquitto 2.0 lets any user take over a connected client id; the option stops that."""
    for option, taken_over in (
        ("--many-connections-per-user", True),
        ("--one-connection-per-user", False),
    ):
        site = make_site(tmp_path / option.strip("-"), "--plain", option)
        broker = site.start_broker()
        try:
            async with (
                Spy(
                    site,
                    "frontdoor",
                    site.passwords["frontdoor"],
                    client_id="peercam-frontdoor",
                    port=site.mqtt_port,
                ) as device,
                Spy(
                    site,
                    "mallory",
                    site.passwords["mallory"],
                    client_id="peercam-frontdoor",
                    port=site.mqtt_port,
                ),
            ):
                await asyncio.sleep(1.0)
                if taken_over:
                    await wait_until(lambda: device.disconnected is not None, "the takeover", 10)
                else:
                    assert device.disconnected is None, device.disconnected
                    await device.subscribe(f"{FD}/in/+")  # still connected and working
        finally:
            broker.stop()


# --- TLS --------------------------------------------------------------------------------------


async def test_daemon_connects_over_tls_with_the_generated_ca(
    site: Site, run_daemon: Callable
) -> None:
    site.provision(
        "device",
        "add",
        "porch",
        "--camera",
        "test-pattern",
        "--host-network",
        "127.0.0.1/32",
        "--broker",
        f"mqtts://localhost:{site.mqtts_port}",
    )
    site.add_viewer("carol", "porch")
    site.export()
    broker = site.broker
    assert broker is not None
    reloads = broker.log_text().count("Reloading config")
    site.reload_broker()
    bundle = site.bundle_config("porch")
    assert bundle["mqtt"]["url"] == f"mqtts://localhost:{site.mqtts_port}"
    assert Path(bundle["mqtt"]["ca_file"]).read_bytes() == site.ca_file.read_bytes()  # noqa: ASYNC240
    # porch and carol exist for the broker once it has reloaded
    await wait_until(
        lambda: broker.log_text().count("Reloading config") > reloads, "mosquitto's reload", 10
    )
    daemon = await run_daemon(site, "porch")
    carol = await viewer(site, "carol", device="porch")
    try:
        await carol.wait_status(state="online", timeout=40)
        assert "connected to mqtts://localhost" in daemon.log_text()
        watch = await carol.watch()
        await watch.wait_frames(5, timeout=30)
        await watch.bye()
    finally:
        await carol.close()


async def test_tls_listener_refuses_clients_that_do_not_trust_its_ca(site: Site) -> None:
    """Without ca_file the system store does not know the private CA: a clear TLS error."""
    config = site.bundle_config(
        "frontdoor", mqtt={"url": f"mqtts://localhost:{site.mqtts_port}", "ca_file": ""}
    )
    path = site.root / "no-ca.toml"
    from tests.daemon_proc import to_toml

    path.write_text(to_toml(config))
    done = await peercam_check(path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"TLS to mqtts://localhost:{site.mqtts_port} failed" in done.stdout + done.stderr


async def test_wss_listener_takes_mqtt_over_secure_websockets(site: Site) -> None:
    context = ssl.create_default_context(cafile=str(site.ca_file))
    client = aiomqtt.Client(
        "localhost",
        site.wss_port,
        username="alice",
        password=site.passwords["alice"],
        transport="websockets",
        websocket_path="/mqtt",
        tls_context=context,
        timeout=10,
    )
    async with asyncio.timeout(15), client:
        await client.subscribe(f"{FD}/status", qos=1)  # a real MQTT session over wss
    with pytest.raises(MqttConnectError):
        wrong = aiomqtt.Client(
            "localhost",
            site.wss_port,
            username="alice",
            password="wrong-password",
            transport="websockets",
            websocket_path="/mqtt",
            tls_context=context,
            timeout=10,
        )
        async with asyncio.timeout(15), wrong:
            pass
