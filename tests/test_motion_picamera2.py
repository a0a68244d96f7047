"""Motion on the Pi camera's lores stream, through the fake picamera2 (``--fake-hardware``).

The daemon asks picamera2 for a small YUV420 ``lores`` stream next to ``main``
and reads its Y plane with ``capture_array("lores")``; the fake camera shows
the still ``doorway`` scene and walks a visitor through it when the test bumps
``visitor`` in its control file. One visit → one ``motion`` start and end on
``events`` and a clip; the H.264 stream goes on unchanged meanwhile.
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
                       "keyframe_interval": 30},
            "motion": {"enabled": True, "fps": 10, "quiet": 1.5, "min_interval": 60},
            "recording": {"enabled": True, "dir": str(clips), "preroll": 2, "postroll": 2},
        },
        args=FAKE_HARDWARE,
        env=cam.env(),
    )  # fmt: skip
    events: list[dict] = []
    viewer = await viewer_factory(mosquitto, "alice")
    status = await viewer.wait_status(lambda s: s.get("camera") == "streaming", timeout=20)
    # streaming with nobody watching: motion keeps the camera running
    assert status["viewers"] == 0
    assert not [f for f in status["faults"] if f.startswith("motion")], status

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
