"""The doorbell in a real Home Assistant core, over a real Mosquitto with the provisioned ACL.

One Home Assistant (its start costs ~30 s) serves the whole module: it is
onboarded and given the MQTT integration over its REST API, as Home
Assistant's own user ``homeassistant`` made by ``peercam provision
homeassistant add``.  Two daemons run from their provisioned bundles with
``--fake-hardware`` (gpiozero mock pins; SIGUSR1 presses the call button):
``frontdoor`` with a door strike, ``gate`` without.  The tests run in file
order and build on each other (ring, door, restart, kill, removal).

Skipped, with the reason, only where no Python 3.13 exists for Home Assistant.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import pytest

from tests.daemon_proc import DaemonProcess, attach_log, run_in_thread
from tests.ha_core import HomeAssistant, HomeAssistantUnavailable, ensure_venv
from tests.mosquitto import MosquittoNotInstalled, free_port
from tests.provisioned import Site, Spy
from tests.viewer import Viewer

pytestmark = pytest.mark.timeout(300)  # Home Assistant starts in ~30 s; twice on 2 busy cores

DOOR_PIN = 22
FRONT = ("doorbell", "snapshot", "online", "ringing", "viewers", "open_door")
DOMAINS = {
    "doorbell": "event",
    "snapshot": "image",
    "online": "binary_sensor",
    "ringing": "binary_sensor",
    "viewers": "sensor",
    "open_door": "button",
    "motion": "binary_sensor",
}
#: The gate: no door strike, but motion detection.
GATE = (*FRONT[:-1], "motion")
REFUSED = "Home Assistant opens the door only during a call answered by a viewer"


def entity(device: str, obj: str) -> str:
    return f"{DOMAINS[obj]}.{device}_{obj}"


@dataclass
class Home:
    site: Site
    ha: HomeAssistant
    front: DaemonProcess
    gate: DaemonProcess
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    try:
        ensure_venv()  # scripts/test.sh built it before pytest; a fresh machine builds it here
    except HomeAssistantUnavailable as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("homeassistant")
    site = Site(root)
    site.init("--plain")
    site.add_device("frontdoor")
    site.add_device("gate")
    alice = site.add_viewer("alice", "frontdoor", "gate")
    out = site.provision("homeassistant", "add")
    match = re.search(r"^  Password:  (\S+)$", out, re.MULTILINE)
    assert match, out
    site.passwords["homeassistant"] = match.group(1)
    site.export()
    try:
        site.start_broker()
    except MosquittoNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)

    def daemon(device: str, **overrides: dict[str, Any]) -> DaemonProcess:
        config = site.bundle_config(
            device,
            call={"state_dir": str(root / f"state-{device}"), "min_press_interval": 0.5},
            homeassistant={"dashboard_url": "http://127.0.0.1:8080/"},
            **overrides,
        )
        return DaemonProcess(
            config,
            root / device,
            status_auth=("alice", alice),
            extra_args=["--fake-hardware"],
        )

    front = daemon(
        "frontdoor", gpio={"door_pin": DOOR_PIN, "door_openers": ["alice", "homeassistant"]}
    )
    # A STUN server nobody runs (a free loopback port): a fault the gate reports.
    # The gate also detects motion: the test pattern's still doorway, a visitor on SIGUSR2.
    gate = daemon(
        "gate",
        webrtc={"ice_servers": [f"stun:127.0.0.1:{free_port()}"]},
        camera={"pattern": "doorway"},
        motion={"enabled": True, "fps": 10, "quiet": 1.5, "min_interval": 5},
    )
    ha = HomeAssistant(root / "ha", free_port())
    try:
        for d in (front, gate):
            d.start()
        ha.start()
        ha.onboard()
        ha.add_mqtt(site.port, "homeassistant", site.passwords["homeassistant"])
        for d in (front, gate):
            run_in_thread(d.wait_online)
        yield Home(site, ha, front, gate, site.passwords)
        for d in (front, gate):
            if d.running:
                assert run_in_thread(d.terminate) == 0, d.log_text()
            d.assert_no_traceback()
    finally:
        ha.stop()
        for d in (front, gate):
            d.kill()
        assert site.broker is not None
        site.broker.stop()


@pytest.fixture
def h(home: Home, request: pytest.FixtureRequest) -> Home:
    attach_log(request.node, "home assistant log", lambda: home.ha.log_text()[-30_000:])
    attach_log(request.node, "daemon frontdoor log", home.front.log_text)
    attach_log(request.node, "daemon gate log", home.gate.log_text)
    assert home.site.broker is not None
    attach_log(request.node, "mosquitto log", home.site.broker.log_text)
    return home


async def poll(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """``check()`` (run in a thread: it calls Home Assistant) until truthy; bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.1)


def live(ha: HomeAssistant, entity_id: str) -> dict[str, Any] | None:
    """The entity's state, unless it is missing or only restored from before a restart."""
    state = ha.state(entity_id)
    if state is None or state["attributes"].get("restored"):
        return None
    return state


async def wait_state(
    ha: HomeAssistant, entity_id: str, ok: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    return await poll(lambda: (s := live(ha, entity_id)) is not None and ok(s) and s, what)


# --- the tests, in order ----------------------------------------------------------------


async def test_entities_appear_on_one_device_each(h: Home) -> None:
    ha = h.ha
    for obj in FRONT:
        await poll(lambda o=obj: live(ha, entity("frontdoor", o)), f"{entity('frontdoor', obj)}")
    for obj in GATE:
        await poll(lambda o=obj: live(ha, entity("gate", o)), f"{entity('gate', obj)}")

    # (each entity reads the retained status a moment after it is created)
    await wait_state(ha, "binary_sensor.frontdoor_online", lambda s: s["state"] == "on", "on")
    await wait_state(ha, "binary_sensor.frontdoor_ringing", lambda s: s["state"] == "off", "off")
    viewers = await wait_state(ha, "sensor.frontdoor_viewers", lambda s: s["state"] == "0", "0")
    assert viewers["attributes"]["faults"] == []
    assert viewers["attributes"]["call_state"] == "idle"
    doorbell = ha.state("event.frontdoor_doorbell")
    assert doorbell is not None
    assert doorbell["attributes"]["device_class"] == "doorbell"
    assert doorbell["attributes"]["event_types"] == ["ring"]

    device = "device_id('event.frontdoor_doorbell')"
    described = ha.template(
        f"{{{{ device_attr({device}, 'name') }}}}|{{{{ device_attr({device}, 'manufacturer') }}}}"
        f"|{{{{ device_attr({device}, 'model') }}}}|{{{{ device_attr({device}, 'sw_version') }}}}"
        f"|{{{{ device_attr({device}, 'configuration_url') }}}}"
    )
    from peercam import __version__

    assert described == f"Frontdoor|peercam|peercam doorbell|{__version__}|http://127.0.0.1:8080/"
    members = ha.template(f"{{{{ device_entities({device}) | sort | join(',') }}}}")
    assert members.split(",") == sorted(entity("frontdoor", o) for o in FRONT)
    # The device's faults (the dashboard's list) are the viewers sensor's attributes.
    faulty = await wait_state(
        ha,
        "sensor.gate_viewers",
        lambda s: any("ICE server stun:127.0.0.1" in f for f in s["attributes"].get("faults", [])),
        "the gate's STUN fault as an attribute",
    )
    assert faulty["state"] == "0"
    gate = ha.template("{{ device_entities(device_id('event.gate_doorbell')) | sort | join(',') }}")
    assert gate.split(",") == sorted(entity("gate", o) for o in GATE)
    assert ha.state("button.gate_open_door") is None  # no door strike, no button


async def test_a_press_fires_the_ring_event_and_shows_its_snapshot(h: Home) -> None:
    ha = h.ha
    before = ha.state("event.frontdoor_doorbell")
    image_before = ha.state("image.frontdoor_snapshot")
    assert before is not None and image_before is not None
    async with Spy(h.site, "alice", h.passwords["alice"]) as alice:
        await alice.subscribe("peercam/frontdoor/events")
        h.front.signal(signal.SIGUSR1)
        event = await wait_state(
            ha,
            "event.frontdoor_doorbell",
            lambda s: s["state"] != before["state"] and s["attributes"].get("event_type") == "ring",
            "the ring event",
        )
        fired = dt.datetime.fromisoformat(event["state"])
        assert abs((dt.datetime.now(dt.UTC) - fired).total_seconds()) < 60
        call = event["attributes"]["call"]
        await wait_state(
            ha, "binary_sensor.frontdoor_ringing", lambda s: s["state"] == "on", "ring"
        )

        # The image entity shows this ring's snapshot: the very JPEG of the call log.
        await wait_state(
            ha,
            "image.frontdoor_snapshot",
            lambda s: s["state"] != image_before["state"],
            "the snapshot",
        )
        status, jpeg = await asyncio.to_thread(
            ha.get_bytes, "/api/image_proxy/image.frontdoor_snapshot"
        )
        assert status == 200 and jpeg[:2] == b"\xff\xd8", (status, jpeg[:40])
        with av.open(io.BytesIO(jpeg)) as container:
            picture = next(container.decode(video=0))
        assert (picture.width, picture.height) == (320, 240)
        await alice.subscribe(f"peercam/frontdoor/snapshot/{call}")
        await poll(lambda: any(t.endswith(call) for t in alice.topics()), "the call's snapshot")
        assert next(p for t, p, _ in alice.received if t.endswith(call)) == jpeg

        # A doorbell fires on every press: again while the call rings (viewers hear of the
        # call once; presses within min_press_interval 0.5 s would count once).
        await asyncio.sleep(0.6)
        h.front.signal(signal.SIGUSR1)
        again = await wait_state(
            ha,
            "event.frontdoor_doorbell",
            lambda s: s["state"] != event["state"],
            "the second ring event",
        )
        assert again["attributes"]["event_type"] == "ring" and again["attributes"]["call"] == call
        calls = [t for t, p, _ in alice.received if t.endswith("/events") and b'"call"' in p]
        assert len([p for t, p, _ in alice.received if b'"type":"call"' in p]) == 1, calls
        event = again

        await alice.publish("peercam/frontdoor/in/alice", {"v": 1, "type": "decline", "call": call})
        await wait_state(
            ha, "binary_sensor.frontdoor_ringing", lambda s: s["state"] == "off", "end"
        )
        # call-ended and the rest of events are not rings: the event entity stayed put
        assert ha.state("event.frontdoor_doorbell")["state"] == event["state"]  # type: ignore[index]


async def test_motion_fires_the_event_and_turns_the_motion_sensor_on_then_off(h: Home) -> None:
    ha = h.ha
    assert ha.state("binary_sensor.frontdoor_motion") is None, "frontdoor has no motion"
    sensor = await wait_state(
        ha, "binary_sensor.gate_motion", lambda s: s["state"] == "off", "a still gate"
    )
    assert sensor["attributes"].get("device_class") == "motion"
    before = ha.state("event.gate_doorbell")
    assert before is not None and "motion" in before["attributes"]["event_types"]
    h.gate.signal(signal.SIGUSR2)  # a scripted visitor walks past the gate's camera
    event = await wait_state(
        ha,
        "event.gate_doorbell",
        lambda s: s["state"] != before["state"] and s["attributes"].get("event_type") == "motion",
        "the motion event",
    )
    assert event["attributes"]["event_type"] == "motion"
    await wait_state(ha, "binary_sensor.gate_motion", lambda s: s["state"] == "on", "motion on")
    await wait_state(ha, "binary_sensor.gate_motion", lambda s: s["state"] == "off", "motion off")


async def test_the_door_button_opens_only_during_a_call_answered_by_an_opener(h: Home) -> None:
    ha = h.ha

    def refusals() -> int:
        return h.front.log_text().count(REFUSED)

    async with Viewer(
        h.site.url, device="frontdoor", viewer_id="alice", password=h.passwords["alice"]
    ) as alice:
        await alice.wait_status(state="online", door=True, call=None)
        await asyncio.to_thread(ha.press, "button.frontdoor_open_door")  # nobody at the door
        await poll(lambda: refusals() == 1, "the refusal while idle")

        await asyncio.sleep(0.6)  # min_press_interval
        h.front.signal(signal.SIGUSR1)
        ring = await alice.next_event()
        assert ring["type"] == "call"
        await asyncio.to_thread(ha.press, "button.frontdoor_open_door")  # ringing, not answered
        await poll(lambda: refusals() == 2, "the refusal while ringing")

        session = await alice.watch(call=ring["call"])
        await session.wait_frames(3)
        answered = await alice.next_event()
        assert (answered["type"], answered["reason"]) == ("call-ended", "answered")
        assert not [e for e in alice.events if e["type"] == "opened"]

        await asyncio.to_thread(ha.press, "button.frontdoor_open_door")
        opened = await alice.next_event()
        assert opened["type"] == "opened" and opened["by"] == "homeassistant", opened
        assert refusals() == 2
        await session.bye()
        await alice.wait_status(call=None)


async def test_home_assistant_restarting_gets_the_configs_again(h: Home) -> None:
    """A real restart, with the retained configs gone meanwhile: only the birth brings them."""
    ha = h.ha
    await asyncio.to_thread(ha.stop)
    async with Spy(h.site, "homeassistant", h.passwords["homeassistant"]) as spy:
        for device, objs in (("frontdoor", FRONT), ("gate", GATE)):
            for obj in objs:
                topic = f"homeassistant/{DOMAINS[obj]}/peercam_{device}/{obj}/config"
                await spy.publish(topic, b"", retain=True)
    births = h.front.log_text().count("Home Assistant came online")
    await asyncio.to_thread(ha.start)
    for device, objs in (("frontdoor", FRONT), ("gate", GATE)):
        for obj in objs:
            await poll(lambda d=device, o=obj: live(ha, entity(d, o)), f"{entity(device, obj)}")
    assert h.front.log_text().count("Home Assistant came online") > births
    await wait_state(ha, "binary_sensor.frontdoor_online", lambda s: s["state"] == "on", "on")


async def test_a_killed_daemon_reads_offline(h: Home) -> None:
    ha = h.ha
    await wait_state(ha, "binary_sensor.frontdoor_online", lambda s: s["state"] == "on", "online")
    h.front.kill()  # SIGKILL: only the broker's last will speaks for it
    await wait_state(ha, "binary_sensor.frontdoor_online", lambda s: s["state"] == "off", "offline")
    for obj in ("doorbell", "snapshot", "ringing", "viewers", "open_door"):
        await wait_state(
            ha, entity("frontdoor", obj), lambda s: s["state"] == "unavailable", f"{obj} gone"
        )
    assert live(ha, "binary_sensor.gate_online")["state"] == "on"  # type: ignore[index]


async def test_removing_a_device_removes_its_entities(h: Home) -> None:
    ha = h.ha
    assert await h.gate.terminate() == 0
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "peercam", "ha-remove", "--config", str(h.gate.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "discovery configs cleared" in result.stdout

    def gone() -> bool:
        ids = [s["entity_id"] for s in ha.states()]
        return not any(".gate_" in i for i in ids)

    await poll(gone, "the gate's entities to go")
    assert ha.template("{{ device_id('binary_sensor.gate_online') }}").strip() in ("None", "")
    assert live(ha, "event.frontdoor_doorbell") is not None  # the other device stays


def test_home_assistant_logged_no_complaint_about_our_payloads(h: Home) -> None:
    """Discovery schema errors, template errors and bad event payloads are logged, not raised."""
    complaints = [
        line
        for line in h.ha.log_text().splitlines()
        if ("WARNING" in line or "ERROR" in line)
        and ("mqtt" in line or "template" in line.lower())
        and ("peercam" in line or "frontdoor" in line or "gate" in line)
    ]
    assert not complaints, "\n".join(complaints)
