"""[relay] mode = "janus" for real: Debian's Janus, the daemon, and viewers in lab namespaces.

Janus runs in a namespace of its own on the lab's "internet" (tests/janus_lab.py),
the daemon behind NAT A, viewers behind NAT B; Janus's config is what
``peercam provision export`` writes.  Timings are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import pytest

from tests.janus_fixtures import (  # noqa: F401 - fixtures
    RelayDaemonFactory,
    janus_fixture,
    lab_fixture,
    needs_janus_lab,
    relay_daemon_fixture,
)
from tests.janus_lab import JANUS_URL, JanusServer
from tests.netlab import (
    ROOT,
    TURN_TCP,
    VIEWER_NET,
    Nat,
    NetLab,
    run_in_namespace,
    run_lab_viewer,
)
from tests.waiting import wait_until

pytestmark = needs_janus_lab


async def janus_viewer(lab: NetLab, *args: str, timeout: float = 20.0) -> dict[str, Any]:
    """tests/janus_viewer.py in the viewer namespace; its summary (last JSON line)."""
    import json

    assert lab.broker is not None
    argv = [
        sys.executable, "-m", "tests.janus_viewer", "--broker", lab.broker.url,
        "--host-network", VIEWER_NET, "--timeout", str(timeout), *args,
    ]  # fmt: skip
    rc, out = await run_in_namespace(lab.viewer, argv, env=lab.env(), timeout=timeout * 6 + 10)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        raise AssertionError(f"the Janus viewer failed (exit {rc}):\n{out}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["log"] = out
    return result


def report(case: str, result: dict[str, Any]) -> None:
    firsts = [s.get("subscribe_to_first_frame") for s in result.get("subscriptions", [])]
    shown = ", ".join("-" if f is None else f"{f * 1000:.0f} ms" for f in firsts)
    print(f"\n[relay] {case}: path {result.get('path')}, subscribe→first frame {shown}",
          file=sys.stderr)  # fmt: skip


async def test_device_publishes_and_a_viewer_decodes_through_janus(
    lab: NetLab, janus: JanusServer, relay_daemon: RelayDaemonFactory
) -> None:
    janus.start()
    daemon = await relay_daemon(policy="always")
    status = await daemon.wait_status(lambda s: s.get("relay", {}).get("state") == "idle", 10)
    assert status["relay"]["feed"] is None  # on demand: nothing is sent before a viewer
    result = await janus_viewer(lab, "--frames", "15")
    report("policy always", result)
    assert result["ok"], f"{result.get('error')}\n{result['log']}"
    assert result["path"] == "relay"
    assert result["welcome_relay"]["url"] == JANUS_URL
    assert result["welcome_relay"]["room"] == 4242
    assert result["subscriptions"][0]["frames"] >= 15
    assert "publishing to Janus" in daemon.log_text()
    # The viewer said bye: its lease is gone and, after the linger, so is the publish.
    await daemon.wait_status(lambda s: s["relay"]["viewers"] == 0, 10)
    status = await daemon.wait_status(lambda s: s["relay"]["state"] == "idle", 30)
    assert status["faults"] == []


async def test_first_viewer_is_peer_to_peer_the_second_goes_through_janus(
    lab: NetLab, janus: JanusServer, relay_daemon: RelayDaemonFactory
) -> None:
    janus.start()
    daemon = await relay_daemon(p2p_viewers=1)
    first = asyncio.create_task(
        janus_viewer(lab, "--viewer", "alice", "--frames", "10", "--hold", "30")
    )
    try:
        await daemon.wait_status(lambda s: s["viewers"] == 1, 20)
        second = await janus_viewer(lab, "--viewer", "bob", "--frames", "10")
        report("p2p_viewers = 1, second viewer", second)
        assert second["ok"], f"{second.get('error')}\n{second['log']}"
        assert second["path"] == "relay"
        # A v1 viewer knows nothing of relays: it offers anyway and gets a clear busy
        # that also says where the SFU is (v1.1 viewers read error.relay).
        v1 = await run_lab_viewer(lab, "--viewer", "carol", "--turn", "none", "--no-stun")
        assert not v1["ok"]
        assert "busy" in v1["error"] and "SFU" in v1["error"], v1["error"]
    finally:
        result = await asyncio.wait_for(first, 120)
    assert result["ok"], f"{result.get('error')}\n{result['log']}"
    assert result["path"] == "p2p"


async def test_janus_killed_and_restarted_the_viewer_gets_pictures_again(
    lab: NetLab, janus: JanusServer, relay_daemon: RelayDaemonFactory
) -> None:
    janus.start()
    daemon = await relay_daemon(policy="always", max_backoff=2)
    argv = [
        sys.executable, "-m", "tests.janus_viewer", "--broker", f"{lab.broker.url}",
        "--host-network", VIEWER_NET, "--timeout", "30", "--frames", "10",
        "--subscriptions", "2",
    ]  # fmt: skip
    viewer = lab.spawn("view", "janus-viewer", argv, env=lab.env(), cwd=ROOT)
    try:
        await wait_until(lambda: '"event": "frames"' in viewer.log_text(), "first frames", 30)
        first_feed = (await daemon.wait_status(lambda s: s["relay"]["feed"], 5))["relay"]["feed"]
        janus.kill()
        status = await daemon.wait_status(lambda s: s["relay"]["state"] == "fault", 10)
        assert any("went away" in f for f in status["faults"]), status["faults"]
        janus.start()
        back = time.monotonic()
        status = await daemon.wait_status(
            lambda s: s["relay"]["state"] == "publishing" and s["relay"]["feed"] != first_feed,
            30,
        )
        republished = time.monotonic() - back
        assert status["faults"] == []
        await wait_until(lambda: not viewer.running, "the viewer seeing the new feed", 60)
        print(
            f"\n[relay] Janus restarted: the device republished {republished * 1000:.0f} ms "
            f"after Janus listened again (status seen by the test); the viewer had 10 new "
            f"frames {time.monotonic() - back:.1f} s after (at most; polled)",
            file=sys.stderr,
        )
    finally:
        viewer.stop()
    result = json.loads(viewer.log_text().strip().splitlines()[-1])
    report("Janus restarted", result)
    assert result["ok"], f"{result.get('error')}\n{viewer.log_text()}"
    feeds = [s["feed"] for s in result["subscriptions"]]
    assert feeds[0] == first_feed and feeds[-1] == status["relay"]["feed"], feeds
    assert "republish #1" in daemon.log_text()


@pytest.mark.parametrize("case", ["vp8-room", "pin-room", "no-janus"])
async def test_a_room_or_janus_that_refuses_the_publish_is_a_precise_fault(
    lab: NetLab, janus: JanusServer, relay_daemon: RelayDaemonFactory, case: str
) -> None:
    janus.rooms = {
        "room-4343": {"description": "VP8 only", "videocodec": "vp8", "publishers": 3},
        "room-4444": {"description": "needs a pin", "videocodec": "h264", "pin": "1234abcd"},
    }
    if case != "no-janus":
        janus.start()
    room = {"vp8-room": 4343, "pin-room": 4444, "no-janus": 4242}[case]
    daemon = await relay_daemon(room=room, publish="always")
    status = await daemon.wait_status(lambda s: s["relay"]["state"] == "fault", 20)
    fault = " ".join(f for f in status["faults"] if f.startswith("relay: "))
    print(f"\n[relay] {case}: {fault}", file=sys.stderr)
    expected = {
        "vp8-room": f"room 4343 on {JANUS_URL} takes video vp8, not H.264",
        "pin-room": "refused the publisher in room 4444: error 429: Missing mandatory "
        "element (pin) (the room has a pin: put it in the file [relay] room_pin_file names)",
        "no-janus": f"cannot reach Janus at {JANUS_URL}",
    }[case]
    assert expected in fault, status["faults"]
    assert "retrying in" in fault
    # `peercam check` says the same before anyone runs the daemon.
    rc, out = await run_in_namespace(
        lab.device,
        [sys.executable, "-m", "peercam", "check", "--config", str(daemon.config_path)],
        env=lab.env(),
        timeout=60,
    )
    relay_lines = [x for x in out.splitlines() if "relay: Janus" in x]
    print(f"[relay] peercam check: {relay_lines}", file=sys.stderr)
    assert rc == 1 and relay_lines and "[FAIL]" in relay_lines[0], out
    check_says = {"vp8-room": "takes video vp8", "pin-room": "pin", "no-janus": "cannot open"}
    assert check_says[case] in relay_lines[0], relay_lines
    # The device keeps serving peer-to-peer meanwhile (new viewers are not sent to a dead SFU).
    v1 = await run_lab_viewer(lab, "--viewer", "dave", "--turn", "none", "--no-stun")
    assert v1["ok"], v1


async def test_a_device_without_udp_reaches_janus_through_turn(
    lab: NetLab, janus: JanusServer, relay_daemon: RelayDaemonFactory
) -> None:
    """An SFU across the internet from a network that lets only TCP out: TURN over TCP."""
    lab.set_nat("a", Nat.PORT_RESTRICTED, block_udp=True)
    janus.start()
    daemon = await relay_daemon(ice_servers=[TURN_TCP], policy="always")
    result = await janus_viewer(lab, "--frames", "15")
    report("device behind a UDP-blocking NAT", result)
    assert result["ok"], f"{result.get('error')}\n{result['log']}"
    published = [line for line in daemon.log_text().splitlines() if "publishing to Janus" in line]
    assert published and "relay 198.18.0.1" in published[-1], published
