"""The substream on the (fake) Pi camera: a second H264Encoder on picamera2's lores stream.

The daemon configures ``lores`` next to ``main`` and, while a viewer
receives the substream, runs a second encoder on it with
``start_encoder(encoder, output, name="lores")``, started and stopped while
the camera keeps running.  On a Pi 5 (software encoder) the substream is off
unless configured, and ``status`` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import DaemonFactory
from tests.fakecam import FAKE_HARDWARE, FakeCamera
from tests.mosquitto import MosquittoBroker
from tests.viewer import ViewerFactory

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0


def config(**camera: Any) -> dict[str, Any]:
    base = {
        "source": "picamera2",
        "width": 640,
        "height": 360,
        "fps": 30,
        "bitrate": 600_000,
        "keyframe_interval": 60,
        "idle_stop": 0.5,
        "substream_width": 320,
        "substream_height": 180,
        "substream_bitrate": 150_000,
    }
    return {"camera": {**base, **camera}}


@pytest.fixture
def cam(tmp_path: Path) -> FakeCamera:
    return FakeCamera(tmp_path / "fakehw")


async def test_the_substream_is_a_second_hardware_encoder_on_lores(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    daemon = await daemon_factory(mosquitto, config=config(), args=FAKE_HARDWARE, env=cam.env())
    main_viewer = await viewer_factory(mosquitto, "alice")
    main = await main_viewer.watch(timeout=WAIT)
    await main.wait_frames(20, WAIT)
    state = cam.state()
    assert state.config["lores"] == [320, 180]
    assert state.lores_encoder == {}, "no second encoder while nobody receives the substream"

    low_viewer = await viewer_factory(mosquitto, "bob")
    low = await low_viewer.watch(timeout=WAIT, quality="low")
    await low.wait_frames(20, WAIT)
    assert set(low.frame_sizes) == {(320, 180)}
    state = cam.state()
    assert state.lores_encoder["class"] == "H264Encoder" and state.lores_encoder["hardware"]
    assert state.lores_encoder["bitrate"] == 150_000
    assert state.lores_encoder["profile"] == "baseline"
    assert state.starts == 1, "the lores encoder joined the running camera"
    status = await daemon.wait_status(
        lambda s: (s.get("substream") or {}).get("state") == "streaming", WAIT
    )
    assert status["substream"]["encoder"] == "hardware"
    # alice kept her stream throughout
    await main.wait_frames(main.frames + 20, WAIT)
    assert set(main.frame_sizes) == {(640, 360)}
    await low.bye()
    await daemon.wait_status(lambda s: (s.get("substream") or {}).get("state") == "idle", WAIT)
    await main.wait_frames(main.frames + 20, WAIT)  # the camera and the main encoder go on
    daemon.assert_no_traceback()


async def test_on_a_pi_5_the_substream_is_off_unless_configured(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    cam.set(platform="pisp")
    daemon = await daemon_factory(mosquitto, config=config(), args=FAKE_HARDWARE, env=cam.env())
    status = await daemon.wait_status(lambda s: "warnings" in s, WAIT)
    assert status["substream"] is None
    assert any("substream off" in w and "substream = true" in w for w in status["warnings"])
    await daemon.terminate()

    forced = await daemon_factory(
        mosquitto, config=config(substream=True), args=FAKE_HARDWARE, env=cam.env()
    )
    viewer = await viewer_factory(mosquitto, "carol")
    watch = await viewer.watch(timeout=WAIT, quality="low")
    await watch.wait_frames(20, WAIT)
    assert set(watch.frame_sizes) == {(320, 180)}
    status = await forced.wait_status(
        lambda s: (s.get("substream") or {}).get("state") == "streaming", WAIT
    )
    assert status["substream"]["encoder"] == "software"
    assert cam.state().lores_encoder["class"] == "LibavH264Encoder"
