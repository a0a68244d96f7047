"""IDR on join, PLI → IDR, and the camera running only while someone watches.

keyframe_interval is 600 frames (20 s at 30 fps): any key frame a test sees
before frame 600 of the stream was requested, not periodic.
"""

from __future__ import annotations

import asyncio
import re

from tests.conftest import DaemonFactory, ViewerFactory
from tests.mosquitto import MosquittoBroker

WAIT = 15.0
RARE_IDR = {"camera": {"keyframe_interval": 600, "idle_stop": 0.5}}


def video_ssrc(answer_sdp: str) -> int:
    """The SSRC the device sends video with (first a=ssrc in the video section)."""
    video = answer_sdp.split("m=video", 1)[1].split("\r\nm=", 1)[0]
    match = re.search(r"a=ssrc:(\d+) ", video)
    assert match, "the answer announces no video SSRC"
    return int(match.group(1))


async def test_a_new_viewer_starts_on_an_idr_requested_for_it(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    await daemon_factory(mosquitto, config=RARE_IDR)
    alice = await viewer_factory(mosquitto, "alice")
    first = await alice.watch(timeout=WAIT)
    await first.wait_frames(45, WAIT)  # well past the camera's first IDR
    assert first.keyframes == [0]

    bob = await viewer_factory(mosquitto, "bob")
    second = await bob.watch(timeout=WAIT)
    await second.wait_frames(10, WAIT)
    assert second.keyframes[:1] == [0], "the newcomer's first decoded frame is an IDR"
    # The IDR was made for bob: alice sees it too, long before the periodic one.
    await first.wait_frames(first.frames + 5, WAIT)
    assert len(first.keyframes) >= 2
    assert first.keyframes[1] < 600


async def test_picture_loss_indication_makes_the_camera_send_an_idr(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    await daemon_factory(mosquitto, config=RARE_IDR)
    alice = await viewer_factory(mosquitto, "alice")
    watch = await alice.watch(timeout=WAIT)
    await watch.wait_frames(30, WAIT)
    assert watch.keyframes == [0]
    assert watch.pc is not None and watch.answer_sdp is not None
    receiver = next(t.receiver for t in watch.pc.getTransceivers() if t.kind == "video")
    before = watch.frames
    await receiver._send_rtcp_pli(video_ssrc(watch.answer_sdp))
    await watch.wait_frames(before + 30, WAIT)
    assert len(watch.keyframes) == 2, f"key frames at {watch.keyframes}"
    assert before <= watch.keyframes[1] < 600


async def test_the_camera_runs_only_while_someone_watches(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await daemon_factory(mosquitto, config=RARE_IDR)
    assert (await daemon.wait_status(lambda s: True))["camera"] == "idle"
    alice = await viewer_factory(mosquitto, "alice")
    watch = await alice.watch(timeout=WAIT)
    await watch.wait_frames(10, WAIT)
    await daemon.wait_status(lambda s: s.get("camera") == "streaming", WAIT)
    await watch.bye()
    status = await daemon.wait_status(lambda s: s.get("camera") == "idle", WAIT)
    assert status["viewers"] == 0
    # And it comes back for the next viewer, starting on an IDR.
    again = await alice.watch(timeout=WAIT)
    await again.wait_frames(10, WAIT)
    assert again.keyframes[:1] == [0]
    await asyncio.sleep(0)
    assert "video source started" in daemon.log_text()
    assert daemon.log_text().count("video source started") == 2
