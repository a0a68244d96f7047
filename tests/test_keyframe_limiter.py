"""One viewer's PLI/FIR become IDRs with a doubling back-off (device/keyframes.py)."""

from __future__ import annotations

import itertools

from peercam.keyframes import KeyframeRequestLimiter
from tests.waiting import wait_until


def honoured(limiter: KeyframeRequestLimiter, times: list[float]) -> list[float]:
    return [t for t in times if limiter.allow(t)]


def test_first_request_is_honoured_at_once_and_repeats_within_the_gap_are_not() -> None:
    limiter = KeyframeRequestLimiter()
    assert honoured(limiter, [100.0, 100.1, 100.2, 100.49]) == [100.0]
    assert limiter.allow(100.5)


def test_a_viewer_that_keeps_asking_backs_off_to_one_idr_per_8_s() -> None:
    limiter = KeyframeRequestLimiter()
    asks = [i / 10 for i in range(400)]  # a PLI every 100 ms for 40 s
    got = honoured(limiter, asks)
    assert got == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 23.5, 31.5, 39.5]
    gaps = [b - a for a, b in itertools.pairwise(got)]
    assert max(gaps) == 8.0


def test_after_a_quiet_spell_the_gap_is_short_again() -> None:
    limiter = KeyframeRequestLimiter()
    honoured(limiter, [i / 10 for i in range(100)])  # 10 s of PLIs: gap is up to 4-8 s
    assert limiter.gap > 1.0
    last = limiter.last
    assert last is not None
    quiet = last + limiter.reset_after
    assert limiter.allow(quiet)
    assert not limiter.allow(quiet + 0.4)
    assert limiter.allow(quiet + 0.5)


def test_limits_can_be_tuned() -> None:
    limiter = KeyframeRequestLimiter(base_gap=1.0, max_gap=2.0, reset_after=5.0, gap=1.0)
    assert honoured(limiter, [i / 2 for i in range(20)]) == [0.0, 1.0, 3.0, 5.0, 7.0, 9.0]


async def test_a_session_passes_pli_through_its_limiter() -> None:
    """Wiring: aiortc's PLI hook on the video sender goes through the session's limiter."""
    from peercam.hub import MediaHub
    from peercam.session import Session
    from tests.test_hub import ScriptedSource
    from tests.viewer import create_offer

    source = ScriptedSource()
    hub = MediaHub(source, kind="video", queue_frames=8, idle_stop=1)
    session = Session(
        "viewer",
        "limiter-test",
        video=hub,
        audio=None,
        ice_servers=[],
        connect_timeout=30,
        on_end=lambda *_: None,
    )
    offer = await create_offer()
    try:
        await session.answer(offer.localDescription.sdp)
        await wait_until(lambda: source.sink is not None, "the source started", 5.0)
        source.push(keyframe=True)  # streaming: requests can reach the source
        sender = session._pc.getTransceivers()[0].sender
        for _ in range(20):
            sender._send_keyframe()
        assert session.keyframe_requests == 1
        assert source.keyframe_requests == 1
        subscription = session._tracks[0].subscription
        assert subscription.limiter.last is not None
        assert subscription.keyframe_requests_held == 19
    finally:
        await session.close()
        await offer.close()
        await hub.close()
