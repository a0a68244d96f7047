"""RelayDirector's policy and leases, and the Janus config generator, without a network."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from peercam.config import ConfigError, RelayConfig, WebRtcConfig, config_from_dict
from peercam.provisioning.janus import JanusSettings, janus_files
from peercam.relay import PublishState
from peercam.relay.director import RelayDirector
from peercam.relay.janus import _answer_problem
from tests.provisioned import Site
from tests.signaling_harness import Harness
from tests.waiting import wait_until


class FakePublisher:
    """Records what the director asks; states are set by the test."""

    def __init__(self) -> None:
        self.state = PublishState.IDLE
        self.fault: str | None = None
        self.wanted: list[bool] = []

    def set_wanted(self, wanted: bool) -> None:
        self.wanted.append(wanted)

    def where(self) -> dict[str, object]:
        return {"mode": "janus", "url": "ws://sfu:8188", "room": 7, "feed": None, "state": "idle"}

    async def close(self) -> None:
        pass


def director(**relay: object) -> tuple[RelayDirector, FakePublisher]:
    config = RelayConfig(mode="janus", url="ws://sfu:8188", **relay)  # type: ignore[arg-type]
    publisher = FakePublisher()
    return RelayDirector(config, publisher, lambda: None), publisher


async def test_overflow_relays_beyond_p2p_viewers_and_publishes_only_while_leased() -> None:
    relay, publisher = director(p2p_viewers=2, linger=0)
    assert not relay.place("a", "s1", p2p_sessions=0, max_viewers=4)
    assert not relay.place("b", "s2", p2p_sessions=1, max_viewers=4)
    assert relay.place("c", "s3", p2p_sessions=2, max_viewers=4)
    assert publisher.wanted[-1] is True
    assert relay.where()["renew"] == 30
    # A renewal keeps the session relayed even if a P2P slot has freed meanwhile.
    assert relay.place("c", "s3", p2p_sessions=0, max_viewers=4)
    relay.drop("c", "s3")
    assert publisher.wanted[-1] is False
    assert relay.status()["viewers"] == 0


async def test_always_policy_relays_everyone_but_never_beyond_max_viewers_limit() -> None:
    relay, _ = director(policy="always")
    assert relay.p2p_limit(4) == 0
    assert relay.place("a", "s1", p2p_sessions=0, max_viewers=4)
    relay, _ = director(p2p_viewers=10)
    assert relay.p2p_limit(4) == 4


async def test_a_faulty_sfu_sends_new_viewers_peer_to_peer_and_keeps_the_leased_ones() -> None:
    relay, publisher = director(p2p_viewers=1)
    assert relay.place("a", "s1", p2p_sessions=1, max_viewers=4)
    publisher.state, publisher.fault = PublishState.FAULT, "Janus at ws://sfu:8188 went away"
    assert relay.p2p_limit(4) == 4
    assert not relay.place("b", "s2", p2p_sessions=1, max_viewers=4)
    assert relay.place("a", "s1", p2p_sessions=2, max_viewers=4)  # still waiting for the feed
    assert relay.faults() == ["relay: Janus at ws://sfu:8188 went away"]


async def test_leases_expire_and_the_last_will_drops_a_viewers_leases() -> None:
    relay, _ = director(p2p_viewers=0, lease=15)
    relay.place("a", "s1", 0, 4)
    relay.place("a", "s2", 0, 4)
    relay.place("b", "s3", 0, 4)
    relay.drop_viewer("a")
    assert list(relay.leases) == [("b", "s3")]
    relay.leases[("b", "s3")] = time.monotonic() - 1
    relay.start()
    await wait_until(lambda: relay.leases == {}, "the expired lease dropped", 3)
    await relay.close()


def test_relay_config_errors_say_what_to_write() -> None:
    with pytest.raises(ConfigError, match=r"needs url \(Janus's WebSocket API"):
        config_from_dict({"relay": {"mode": "janus"}})
    with pytest.raises(ConfigError, match="expected Janus's WebSocket API"):
        config_from_dict({"relay": {"mode": "janus", "url": "http://sfu:8088/janus"}})
    config = config_from_dict({"relay": {"mode": "janus", "url": "ws://sfu:8188"}})
    assert config.relay.room_for("frontdoor") == config.relay.room_for("frontdoor")
    assert config.relay.room_for("frontdoor") != config.relay.room_for("backdoor")


def test_janus_config_enables_only_the_videoroom_over_websockets(tmp_path: Path) -> None:
    files = janus_files(
        JanusSettings(ws_ip="10.0.0.5", ice_enforce_list="eth0", api_secret="s3"), tmp_path
    )
    janus = files["janus.jcfg"]
    assert f'configs_folder = "{tmp_path}"' in janus
    assert 'ice_enforce_list = "eth0"' in janus
    assert 'api_secret = "s3"' in janus
    assert "libjanus_videoroom.so" not in janus  # the one plugin not disabled
    assert "libjanus_websockets.so" not in janus
    assert "libjanus_http.so" in janus and "libjanus_streaming.so" in janus
    assert 'ws_ip = "10.0.0.5"' in files["janus.transport.websockets.jcfg"]


def test_an_answer_that_rejects_h264_is_named() -> None:
    rejected = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=video 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=inactive\r\na=mid:0\r\n"
    )
    assert "rejected H.264" in (_answer_problem(rejected) or "")


def test_provision_export_janus_writes_a_config_janus_starts_with(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.provision("init", "--broker", "mqtt://broker.lan:1883", "--turn-host", "turn.lan")
    out = site.provision("export", "--janus")
    assert "/etc/janus/" in out
    folder = site.registry / "janus"
    janus = (folder / "janus.jcfg").read_text()
    assert 'configs_folder = "/etc/janus"' in janus
    assert 'stun_server = "turn.lan"' in janus and "stun_port = 3478" in janus
    assert "admin_secret" not in janus
    # Janus itself reads it (pointed at the exported folder, on loopback only).
    conf = janus.replace('"/etc/janus"', f'"{folder}"')
    conf = conf.replace('\tstun_server = "turn.lan"\n', "").replace("\tstun_port = 3478\n", "")
    assert "stun" not in conf  # no name resolution in a test
    (folder / "janus.jcfg").write_text(conf)
    ws = folder / "janus.transport.websockets.jcfg"
    ws.write_text(ws.read_text().replace("ws_port = 8188", 'ws_port = 0\n\tws_ip = "127.0.0.1"'))
    if shutil.which("janus") is None:
        pytest.skip("Debian's janus is not installed")
    proc = subprocess.run(
        ["timeout", "-s", "INT", "2", "janus", "-F", str(folder), "-o", "-D"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    log = proc.stdout + proc.stderr
    assert "JANUS VideoRoom plugin initialized" in log, log[-3000:]
    assert "Error" not in log.replace("[ERR] [config.c:janus_config_parse:191]", ""), log[-3000:]


# --- signaling with a director (real sessions, no broker: tests/signaling_harness.py) ------


async def relay_harness(**relay: object) -> tuple[Harness, FakePublisher]:
    config = RelayConfig(mode="janus", url="ws://sfu:8188", **relay)  # type: ignore[arg-type]
    publisher = FakePublisher()
    h = Harness(webrtc=WebRtcConfig(max_viewers=3))
    h.options["relay"] = RelayDirector(config, publisher, lambda: None)
    h.start()
    return h, publisher


async def test_welcome_says_where_to_subscribe_beyond_p2p_viewers_and_offers_get_busy() -> None:
    h, publisher = await relay_harness(p2p_viewers=1)
    try:
        h.send("alice", {"type": "hello", "session": "alice-001"})
        assert "relay" not in await h.reply("alice", "alice-001", ("welcome",))
        await h.offer("alice", "alice-001")
        assert (await h.reply("alice", "alice-001"))["type"] == "answer"
        h.send("bob", {"type": "hello", "session": "bob-0001"})
        welcome = await h.reply("bob", "bob-0001", ("welcome",))
        assert welcome["relay"]["url"] == "ws://sfu:8188" and welcome["relay"]["renew"] == 30
        assert publisher.wanted[-1] is True
        # A v1 viewer ignores relay and offers: a clear busy that also says where to go,
        # and its lease is gone (it will never subscribe).
        await h.offer("bob", "bob-0001")
        busy = await h.reply("bob", "bob-0001", ("error", "answer"))
        assert busy["code"] == "busy" and "SFU relay (Janus)" in busy["message"]
        assert busy["relay"]["room"] == 7
        assert h.options["relay"].leases == {}
    finally:
        await h.close()


class RingingCall:
    """Just what Signaling asks of its CallManager while call-1234 rings."""

    call = "call-1234"

    def claim(self, viewer: str, session: str, call: str) -> bool:
        return False  # served as watching; what matters here is the policy check

    def session_ended(self, viewer: str, session: str) -> None:
        pass

    def connected(self, viewer: str, session: str) -> None:
        pass


async def test_answering_a_call_is_peer_to_peer_whatever_the_policy() -> None:
    h, _ = await relay_harness(policy="always")
    try:
        await h.offer("carol", "carol-001")
        assert (await h.reply("carol", "carol-001"))["code"] == "busy"
        h.signaling.calls = RingingCall()  # type: ignore[assignment]
        sdp = await h.offer_sdp()
        h.send("dave", {"type": "offer", "session": "dave-0001", "sdp": sdp, "call": "call-1234"})
        assert (await h.reply("dave", "dave-0001"))["type"] == "answer"
    finally:
        await h.close()


async def test_a_last_will_ends_the_viewers_leases_after_the_grace() -> None:
    h, publisher = await relay_harness(policy="always", linger=0)
    try:
        h.send("erin", {"type": "hello", "session": "erin-0001"})
        await h.reply("erin", "erin-0001", ("welcome",))
        h.send("erin", {"type": "bye", "session": "*"})
        await wait_until(lambda: publisher.wanted[-1] is False, "the lease dropped", 5)
    finally:
        await h.close()


async def test_janus_plis_become_idrs_through_the_per_viewer_back_off() -> None:
    """Janus passes every subscriber's PLI on (5 joins, 5 PLIs in 3 ms): one IDR results."""
    from peercam.hub import MediaHub
    from peercam.relay.janus import JanusPublisher, JanusTarget, sfu_keyframe_limiter
    from peercam.tracks import PassthroughTrack
    from tests.test_hub import ScriptedSource

    source = ScriptedSource()
    hub = MediaHub(source, kind="video", queue_frames=8, idle_stop=1)
    track = PassthroughTrack("video", hub.subscribe("video→janus", limiter=sfu_keyframe_limiter()))
    target = JanusTarget("ws://sfu:8188", "ws://sfu:8188", 7, True, 1_000_000, "Door")

    async def no_servers() -> list[object]:
        return []

    publisher = JanusPublisher(
        target,
        video=hub,
        audio=None,
        ice_servers=no_servers,  # type: ignore[arg-type]
        on_change=lambda: None,
    )
    try:
        await wait_until(lambda: source.sink is not None, "the source started", 5)
        source.push(keyframe=True)  # streaming: requests reach the source
        sender = type("Sender", (), {})()
        publisher._hook_keyframe_requests(sender, track)
        for _ in range(5):
            sender._send_keyframe()
        assert source.keyframe_requests == 1
    finally:
        track.stop()
        await hub.close()
    assert (publisher.keyframe_requests_seen, publisher.keyframe_requests) == (5, 1)


def test_the_sfu_back_off_stays_flat_so_later_joins_get_an_idr_soon() -> None:
    """A P2P viewer's gap doubles (a lossy link asking again and again); the SFU's PLIs are
    mostly its subscribers' joins, so its gap stays at one second: a subscriber joining an
    already-publishing device waits at most that, not for the next periodic IDR."""
    from peercam.keyframes import KeyframeRequestLimiter
    from peercam.relay.janus import SFU_KEYFRAME_GAP, sfu_keyframe_limiter

    sfu, p2p = sfu_keyframe_limiter(), KeyframeRequestLimiter()
    joins = [0.0, 0.2, 1.0, 2.0, 3.0, 4.0, 5.0]  # a burst, then one join a second
    assert [sfu.allow(t) for t in joins] == [True, False, True, True, True, True, True]
    assert [p2p.allow(t) for t in joins] == [True, False, True, True, False, True, False]
    assert sfu.gap == SFU_KEYFRAME_GAP
