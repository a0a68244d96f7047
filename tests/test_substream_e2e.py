"""The substream through the daemon: a viewer's explicit choice, switching, status.

The daemon runs the test pattern at 640x360 with a 320x180 substream (the
same picture encoded a second time); real aiortc viewers decode what they
get, so the frame sizes they decode say which stream they receive.
"""

from __future__ import annotations

from tests.conftest import DaemonFactory, ViewerFactory
from tests.mosquitto import MosquittoBroker

WAIT = 20.0
MAIN = (640, 360)
SUB = (320, 180)
CONFIG = {
    "camera": {
        "width": MAIN[0],
        "height": MAIN[1],
        "bitrate": 800_000,
        "substream_width": SUB[0],
        "substream_height": SUB[1],
        "substream_bitrate": 200_000,
        "keyframe_interval": 90,
        "idle_stop": 0.5,
    }
}


async def test_a_viewer_that_asks_for_low_gets_the_substream_and_high_switches_back(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await daemon_factory(mosquitto, config=CONFIG)
    alice = await viewer_factory(mosquitto, "alice")
    watch = await alice.watch(timeout=WAIT, quality="low")
    assert watch.welcome is not None
    assert watch.welcome["substream"] == {"codec": "H264", "width": 320, "height": 180, "fps": 30}
    stream = await alice.next_message("stream", session=watch.id, timeout=WAIT)
    assert (stream["stream"], stream["quality"], stream["width"]) == ("sub", "low", 320)
    await watch.wait_frames(30, WAIT)
    assert set(watch.frame_sizes) == {SUB}, watch.frame_sizes
    status = await daemon.wait_status(
        lambda s: (s.get("substream") or {}).get("viewers") == 1, WAIT
    )
    assert status["substream"]["state"] == "streaming"
    assert status["substream"]["encoder"] == "software"

    # The viewer picks high: the main stream from its next IDR, no reconnect.
    await alice.send({"type": "quality", "session": watch.id, "quality": "high"})
    await alice.next_message("stream", session=watch.id, timeout=WAIT)  # the reply
    switched = await alice.next_message("stream", session=watch.id, timeout=WAIT)
    assert (switched["stream"], switched["width"]) == ("main", 640)
    before = watch.frame_sizes[MAIN]
    await watch.wait_frames(watch.frames + 30, WAIT)
    assert watch.frame_sizes[MAIN] >= before + 30
    # ... and the substream stops once nobody receives it (its own idle_stop).
    status = await daemon.wait_status(
        lambda s: (s.get("substream") or {}).get("state") == "idle", WAIT
    )
    assert status["substream"]["viewers"] == 0


async def test_a_v1_viewer_gets_the_main_stream_and_no_stream_messages(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await daemon_factory(mosquitto, config=CONFIG)
    bob = await viewer_factory(mosquitto, "bob")
    watch = await bob.watch(timeout=WAIT)
    await watch.wait_frames(30, WAIT)
    assert set(watch.frame_sizes) == {MAIN}
    assert not [m for m in bob.pending() if m.get("type") == "stream"]
    status = await daemon.wait_status(lambda s: s.get("substream") is not None, WAIT)
    assert status["substream"]["state"] == "idle", "started only while someone watches it"


async def test_a_bad_quality_is_a_clear_error(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    await daemon_factory(mosquitto, config={"camera": {"substream": False}})
    carol = await viewer_factory(mosquitto, "carol")
    watch = await carol.watch(timeout=WAIT, quality="auto")
    stream = await carol.next_message("stream", session=watch.id, timeout=WAIT)
    assert stream["substream"] is False and stream["stream"] == "main"
    await carol.send({"type": "quality", "session": watch.id, "quality": "low"})
    error = await carol.next_message("error", session=watch.id, timeout=WAIT)
    assert error["code"] == "unsupported" and "no substream" in error["message"]
    await carol.send({"type": "quality", "session": watch.id, "quality": "medium"})
    error = await carol.next_message("error", session=watch.id, timeout=WAIT)
    assert error["code"] == "bad-request" and "auto, high, low" in error["message"]
    await watch.wait_frames(10, WAIT)  # the session goes on
