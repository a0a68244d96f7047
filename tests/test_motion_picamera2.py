"""Motion on the Pi camera's lores stream, through the fake picamera2 (``--fake-hardware``).

The daemon asks picamera2 for a small YUV420 ``lores`` stream next to ``main``
and reads its Y plane with ``capture_array("lores")``; the fake camera shows
the still ``doorway`` scene and walks a visitor through it when the test bumps
``visitor`` in its control file. One visit → one ``motion`` start and end on
``events`` and a clip; the H.264 stream goes on unchanged meanwhile.

With the substream on, picamera2's one lores stream runs at the
substream's size for its second encoder, and motion reads that same stream,
shrunk: a substream viewer and motion detection work side by side.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import av

from tests.daemon_proc import DaemonFactory
from tests.fakecam import FAKE_HARDWARE, FakeCamera
from tests.mosquitto import MosquittoBroker
from tests.viewer import ViewerFactory
from tests.waiting import wait_until

#: The fake camera's picture carries peercam's clock and timecode strip along its
#: bottom (~12 %), which changes every frame (a real camera's picture has none):
#: ~0.6-1.1 % of the small picture, at the 1 % sensitivity. The zone leaves it
#: out, as a user leaves out a busy street.
ABOVE_THE_CLOCK = [{"x": 0.0, "y": 0.0, "w": 1.0, "h": 0.85}]


async def visit(mosquitto: MosquittoBroker, cam: FakeCamera) -> list[dict]:
    """3 s of still scene (no event), then one visitor: ``events`` up to motion's end."""
    events: list[dict] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe("peercam/frontdoor/events", qos=1)

        async def collect(until: str) -> None:
            async for message in client.messages:
                event = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                events.append(event)
                if event.get("type") == "motion" and event.get("state") == until:
                    return

        await asyncio.sleep(3)  # still scene: the pre-roll fills, nothing moves
        assert events == []
        cam.set(visitor=1)
        await asyncio.wait_for(collect("end"), 30)
    return events


async def test_a_visitor_on_the_lores_stream_is_one_motion_event_and_a_clip(
    daemon_factory: DaemonFactory,
    mosquitto: MosquittoBroker,
    viewer_factory: ViewerFactory,
    tmp_path: Path,
) -> None:
    cam = FakeCamera(tmp_path / "fakehw")
    cam.set(scene="doorway")
    clips = tmp_path / "clips"
    daemon = await daemon_factory(
        mosquitto,
        config={
            "camera": {"source": "picamera2", "width": 640, "height": 480, "fps": 30,
                       "keyframe_interval": 30, "substream": False},
            "motion": {"enabled": True, "fps": 10, "quiet": 1.5, "min_interval": 60,
                       "zones": ABOVE_THE_CLOCK},
            "recording": {"enabled": True, "dir": str(clips), "preroll": 2, "postroll": 2},
        },
        args=FAKE_HARDWARE,
        env=cam.env(),
    )  # fmt: skip
    viewer = await viewer_factory(mosquitto, "alice")
    status = await viewer.wait_status(lambda s: s.get("camera") == "streaming", timeout=20)
    # streaming with nobody watching: motion keeps the camera running
    assert status["viewers"] == 0
    assert not [f for f in status["faults"] if f.startswith("motion")], status
    assert cam.state().config["lores"] == [160, 120], "no substream: lores at motion's size"

    events = await visit(mosquitto, cam)
    starts = [e for e in events if e.get("type") == "motion" and e["state"] == "start"]
    assert len(starts) == 1, events
    await wait_until(lambda: any(clips.glob("*.mp4")), "the motion clip written", timeout=20)
    [mp4] = list(clips.glob("*.mp4"))
    assert mp4.stem == starts[0]["clip"]
    with av.open(str(mp4)) as container:
        frames = list(container.decode(video=0))
    assert frames[0].key_frame and len(frames) >= 4 * 30 - 2
    assert "motion: cannot read the lores stream" not in daemon.log_text()
    daemon.assert_no_traceback()


async def test_substream_and_motion_share_the_one_lores_stream(
    daemon_factory: DaemonFactory,
    mosquitto: MosquittoBroker,
    viewer_factory: ViewerFactory,
    tmp_path: Path,
) -> None:
    cam = FakeCamera(tmp_path / "fakehw")
    cam.set(scene="doorway")
    daemon = await daemon_factory(
        mosquitto,
        config={
            "camera": {"source": "picamera2", "width": 1280, "height": 720, "fps": 30,
                       "bitrate": 1_000_000, "keyframe_interval": 30, "substream": True,
                       "substream_width": 640, "substream_height": 360,
                       "substream_bitrate": 300_000},
            "motion": {"enabled": True, "fps": 10, "quiet": 1.5, "min_interval": 60,
                       "zones": ABOVE_THE_CLOCK},
        },
        args=FAKE_HARDWARE,
        env=cam.env(),
    )  # fmt: skip
    viewer = await viewer_factory(mosquitto, "bob")
    await viewer.wait_status(lambda s: s.get("camera") == "streaming", timeout=20)
    # one lores stream, at the substream's size (not motion's 160 px)
    assert cam.state().config["lores"] == [640, 360]
    low = await viewer.watch(timeout=20, quality="low")
    await low.wait_frames(20, 30)
    assert set(low.frame_sizes) == {(640, 360)}
    assert cam.state().lores_encoder["class"] == "H264Encoder"

    events = await visit(mosquitto, cam)  # while the substream encoder runs on lores
    motion = [e for e in events if e.get("type") == "motion"]
    assert [e["state"] for e in motion] == ["start", "end"], events

    await low.wait_frames(low.frames + 20, 20)  # the substream went on meanwhile
    assert set(low.frame_sizes) == {(640, 360)}
    log = daemon.log_text()
    assert "motion: reading the lores stream's Y plane (640x360, the substream's)" in log
    assert "shrunk to 160x90" in log
    assert "motion: cannot read the lores stream" not in log
    daemon.assert_no_traceback()
