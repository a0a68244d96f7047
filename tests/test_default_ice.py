"""The device's ICE with a viewer it cannot name: mDNS candidates nobody resolves.

A browser as people run it offers only ``<uuid>.local`` host candidates and
then end-of-candidates.  Where multicast does not work the device cannot
resolve them, so the browser's own checks to the device's address are the
only way in (the device learns the browser as peer-reflexive).  These tests
use a real aiortc viewer on loopback whose offer carries such names instead
of its addresses, and aioice's mDNS resolver replaced by one that never
finds anything, as on a network without multicast.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid

import aioice.ice
import pytest
from aiortc import RTCSessionDescription

from peercam.config import WebRtcConfig
from peercam.ice_watch import split_offer
from tests.signaling_harness import Harness
from tests.waiting import wait_until


class NoMulticast:
    """aioice's mDNS resolver where multicast does not work: never an answer."""

    def __init__(self, *, hang: bool = False) -> None:
        self.asked: list[str] = []
        self.hang = hang
        self.release = asyncio.Event()

    async def resolve(self, hostname: str, timeout: float | None = 1.0) -> str | None:
        self.asked.append(hostname)
        if self.hang:
            await self.release.wait()
        return None


@pytest.fixture
def no_multicast(monkeypatch: pytest.MonkeyPatch) -> NoMulticast:
    resolver = NoMulticast()

    async def mdns_protocol(subscriber: object) -> NoMulticast:
        return resolver

    async def unref(subscriber: object) -> None:
        return None

    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", mdns_protocol)
    monkeypatch.setattr(aioice.ice, "unref_mdns_protocol", unref)
    return resolver


def hide_addresses(sdp: str) -> tuple[str, list[str]]:
    """The offer as a default browser sends it: each host address replaced by a name."""
    names: list[str] = []

    def hide(match: re.Match[str]) -> str:
        name = f"{uuid.uuid4()}.local"
        names.append(name)
        return f"{match.group(1)}{name}{match.group(3)}"

    hidden = re.sub(r"(a=candidate:\S+ \d+ udp \d+ )(127\.0\.0\.1)( \d+ typ host)", hide, sdp)
    assert names, "the viewer's offer had no host candidate to hide"
    assert "end-of-candidates" in hidden  # aiortc offers end with it, as browsers trickle it
    return hidden, names


NAME_A = "0b8a1f6e-1d2c-4c5e-9a0b-0c1d2e3f4a5b.local"
NAME_B = "1b8a1f6e-1d2c-4c5e-9a0b-0c1d2e3f4a5b.local"


def test_split_offer_takes_out_mdns_candidates_and_end_of_candidates() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
        f"a=candidate:1 1 udp 2122260223 {NAME_A} 50000 typ host\r\n"
        "a=candidate:2 1 udp 1686052607 198.51.100.7 50001 typ srflx raddr 0.0.0.0 rport 0\r\n"
        "a=end-of-candidates\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n"
        f"a=candidate:3 1 udp 2122260223 {NAME_B} 50002 typ host\r\n"
    )
    kept, taken, ended = split_offer(sdp)
    assert ended
    assert ".local" not in kept and "end-of-candidates" not in kept
    assert "198.51.100.7 50001 typ srflx" in kept and kept.endswith("\r\n")
    assert [(t.mline_index, t.mid, t.line.split()[4]) for t in taken] == [
        (0, "0", NAME_A),
        (1, "1", NAME_B),
    ]
    plain = "v=0\nm=video 9 X 96\na=mid:0\n"
    assert split_offer(plain) == (plain, [], False)


async def test_a_viewer_known_only_by_mdns_names_connects_through_its_own_checks(
    no_multicast: NoMulticast,
) -> None:
    """Names never resolve, end-of-candidates comes at once, and the viewer's checks
    come late: the device still answers them, learns the viewer as peer-reflexive and
    connects.  (aioice used to fail such a session 20 ms after the answer: an empty
    check list after end-of-candidates.)"""
    h = Harness()
    signaling = h.start()
    try:
        sdp, names = hide_addresses(await h.offer_sdp())
        viewer = h.offers[-1]
        h.send("alice", {"type": "offer", "session": "alice-mdns1", "sdp": sdp})
        h.send("alice", {"type": "candidate", "session": "alice-mdns1", "candidate": None})
        answer = await h.reply("alice", "alice-mdns1")
        assert answer["type"] == "answer", answer
        session = signaling.sessions[("alice", "alice-mdns1")]
        await wait_until(lambda: set(no_multicast.asked) == set(names), "the names were asked")
        await wait_until(lambda: session.ice_watch.end_of_candidates, "end-of-candidates handled")
        # The viewer's checks start a while after the device had nothing left to check.
        await asyncio.sleep(0.3)
        assert not session.closed, "the device gave up before the viewer's checks came"
        await viewer.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await wait_until(lambda: session.connected, "the session connects", timeout=20)
        assert "⇄ prflx 127.0.0.1" in session.path_description()
        assert sum(session.ice_watch.checks.values()) > 0
        assert all(not address for address in session.ice_watch.mdns.values())
    finally:
        await h.close()


async def test_the_answer_does_not_wait_for_the_viewers_mdns_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = NoMulticast(hang=True)

    async def mdns_protocol(subscriber: object) -> NoMulticast:
        return resolver

    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", mdns_protocol)
    h = Harness()
    h.start()
    try:
        sdp, names = hide_addresses(await h.offer_sdp())
        h.send("alice", {"type": "offer", "session": "alice-mdns2", "sdp": sdp})
        answer = await h.reply("alice", "alice-mdns2")
        assert answer["type"] == "answer", answer
        # Answered while every name is still being looked up.
        assert resolver.asked == names and not resolver.release.is_set()
    finally:
        resolver.release.set()
        await h.close()


async def test_a_session_with_no_path_fails_at_connect_timeout_and_says_what_it_saw(
    no_multicast: NoMulticast, caplog: pytest.LogCaptureFixture
) -> None:
    """The viewer offered only a name and never checks (it cannot reach the device)."""
    h = Harness(webrtc=WebRtcConfig(connect_timeout=1.5))
    signaling = h.start()
    caplog.set_level(logging.INFO, logger="peercam.session")
    try:
        sdp, names = hide_addresses(await h.offer_sdp())
        h.send("alice", {"type": "offer", "session": "alice-mdns3", "sdp": sdp})
        h.send("alice", {"type": "candidate", "session": "alice-mdns3", "candidate": None})
        assert (await h.reply("alice", "alice-mdns3"))["type"] == "answer"
        bye = await h.reply("alice", "alice-mdns3", types=("bye",), timeout=15)
        assert bye["reason"] == "failed"
        assert not signaling.sessions
    finally:
        await h.close()
    (line,) = [r.getMessage() for r in caplog.records if "not connected after" in r.getMessage()]
    assert "device offered host 127.0.0.1:" in line, line
    assert f"viewer offered host {names[0]} (mDNS, not resolved)" in line, line
    assert "(then end-of-candidates)" in line, line
    assert "checks from the viewer: none" in line, line
    assert "pairs: none" in line, line
    # The harness's device offers loopback only, which is what a browser cannot use.
    assert "the device offered only loopback addresses, which browsers never use" in line, line
    assert not [r for r in caplog.records if "ICE/DTLS failed" in r.getMessage()]


def test_the_demo_offers_the_machines_addresses_besides_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A browser never gets a path from 127.0.0.1 alone; Python viewers keep it; ::1 is out."""
    import peercam.ice as ice
    from peercam.demo import ALL_ADDRESSES, host_networks_for

    for host in ("127.0.0.1", "localhost", "0.0.0.0", "::"):
        assert host_networks_for(host) == ALL_ADDRESSES, host
    assert host_networks_for("192.168.1.5") == ["192.168.1.5/32"]
    machine = ["127.0.0.1", "::1", "10.3.0.2", "192.168.1.5", "fd00::2", "2001:db8::5"]
    monkeypatch.setattr(ice, "_all_addresses", lambda: machine)
    chosen = ice._HostAddressFilter(
        [ice.ipaddress.ip_network(n) for n in host_networks_for("127.0.0.1")]
    )(True, True)
    assert chosen == ["127.0.0.1", "10.3.0.2", "192.168.1.5", "fd00::2", "2001:db8::5"]
