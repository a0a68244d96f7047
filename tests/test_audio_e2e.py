"""The microphone end to end: Opus encoded once in the daemon, decoded by every viewer.

Real daemon subprocess, real Mosquitto, aiortc viewers that decode the Opus
they receive.  ``test-tone`` must arrive as a 440 Hz tone; a real ALSA
capture path is exercised with an ALSA configuration whose ``testmic`` is
alsa-lib's built-in ``null`` device (this machine has no sound card); a
missing microphone must leave video alone and say so once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.daemon_proc import DaemonFactory
from tests.fakecam import FAKE_HARDWARE, FakeCamera
from tests.mosquitto import MosquittoBroker
from tests.viewer import ViewerFactory, WatchSession

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0


def dominant_frequency(watch: WatchSession) -> float:
    """The strongest frequency (Hz) in the last decoded audio, first channel."""
    rate = watch.audio_pcm[-1][0]
    # aiortc decodes to packed s16 stereo: shape (1, 2 * samples), channels interleaved.
    left = np.concatenate([pcm.reshape(-1)[::2] for _, pcm in list(watch.audio_pcm)[-50:]])
    spectrum = np.abs(np.fft.rfft(left.astype(np.float64) * np.hanning(len(left))))
    return float(np.fft.rfftfreq(len(left), 1 / rate)[int(np.argmax(spectrum))])


async def test_every_viewer_hears_the_test_tone(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await daemon_factory(mosquitto, config={"audio": {"source": "test-tone"}})
    watches = []
    for name in ("alice", "bob"):
        viewer = await viewer_factory(mosquitto, name)
        watch = await viewer.watch(timeout=WAIT)
        assert watch.welcome is not None and watch.welcome["audio"] == {"codec": "opus"}
        watches.append(watch)
    for watch in watches:
        await watch.wait_audio_frames(100, WAIT)
        await watch.wait_frames(10, WAIT)
        assert abs(dominant_frequency(watch) - 440) < 5
        assert watch.audio_pcm[-1][0] == 48_000
    status = await daemon.wait_status(lambda s: s.get("microphone") == "streaming", WAIT)
    assert status["audio"] == {"codec": "opus"} and status["faults"] == []


async def test_an_alsa_microphone_is_captured_and_encoded(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    tmp_path: Path,
) -> None:
    asound = tmp_path / "asound.conf"
    asound.write_text("pcm.testmic {\n    type null\n}\n", encoding="utf-8")
    daemon = await daemon_factory(
        mosquitto,
        config={"audio": {"source": "alsa:testmic"}},
        env={"ALSA_CONFIG_PATH": str(asound)},
    )
    alice = await viewer_factory(mosquitto, "alice")
    watch = await alice.watch(timeout=WAIT)
    await watch.wait_audio_frames(25, WAIT)
    await watch.wait_frames(10, WAIT)
    assert "microphone alsa:testmic open" in daemon.log_text()


async def test_a_missing_microphone_leaves_video_alone_and_warns_once(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    tmp_path: Path,
) -> None:
    cam = FakeCamera(tmp_path / "fakehw")
    daemon = await daemon_factory(
        mosquitto,
        config={
            "camera": {"source": "picamera2", "width": 320, "height": 240},
            "audio": {"source": "alsa:plughw:7,0"},
        },
        args=FAKE_HARDWARE,
        env=cam.env(),
    )
    alice = await viewer_factory(mosquitto, "alice")
    watch = await alice.watch(timeout=WAIT)
    assert watch.welcome is not None and watch.welcome["audio"] == {"codec": "opus"}
    status = await daemon.wait_status(lambda s: s.get("microphone") == "fault", WAIT)
    (fault,) = status["faults"]
    assert fault.startswith("microphone: alsa:plughw:7,0")
    assert fault.endswith("; continuing with video only")
    await watch.wait_frames(60, WAIT)  # video flows all along, across microphone retries
    assert watch.audio_frames == 0
    log = daemon.log_text()
    lines = [line for line in log.splitlines() if "alsa:plughw:7,0" in line]
    assert len(lines) == 1, lines
    assert " WARNING peercam.hub: audio source cannot start: alsa:plughw:7,0" in lines[0]
    assert "ERROR" not in log
