"""``[camera] source = "picamera2"`` end to end, through the fake Pi camera.

The real daemon (``peercam run --fake-hardware``) drives the fake picamera2
exactly as it would drive the real one; real Mosquitto, real aiortc viewers
that decode every frame.  Faults are made in the fake hardware (no camera,
another process holding it, a stalled encoder, an unplugged camera) and the
daemon must say so in ``status`` and recover with nobody reconnecting.

``keyframe_interval`` is 600 frames (20 s at 30 fps) where a test counts
IDRs: any IDR before frame 600 was requested.  Fault tests use 30 so that
the hub's stall timeout is its 5 s minimum.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import DaemonFactory, DaemonProcess
from tests.fakecam import FAKE_HARDWARE, FakeCamera
from tests.mosquitto import MosquittoBroker
from tests.viewer import Viewer, ViewerFactory, WatchSession

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0  # bound for what should take well under a second (the machine is shared)
FAULT_WAIT = 40.0  # stall timeout (5 s) + restart + backoff, with room

PICAMERA = {
    "camera": {
        "source": "picamera2",
        "width": 320,
        "height": 240,
        "fps": 30,
        "bitrate": 500_000,
        "keyframe_interval": 600,
        "idle_stop": 0.5,
    }
}


def config(**camera: Any) -> dict[str, Any]:
    return {"camera": {**PICAMERA["camera"], **camera}}


@pytest.fixture
def cam(tmp_path: Path) -> FakeCamera:
    return FakeCamera(tmp_path / "fakehw")


async def start(
    daemon_factory: DaemonFactory,
    broker: MosquittoBroker,
    cam: FakeCamera,
    cfg: dict[str, Any] | None = None,
) -> DaemonProcess:
    return await daemon_factory(broker, config=cfg or PICAMERA, args=FAKE_HARDWARE, env=cam.env())


def video_ssrc(answer_sdp: str) -> int:
    video = answer_sdp.split("m=video", 1)[1].split("\r\nm=", 1)[0]
    match = re.search(r"a=ssrc:(\d+) ", video)
    assert match, "the answer announces no video SSRC"
    return int(match.group(1))


async def send_pli(watch: WatchSession) -> None:
    assert watch.pc is not None and watch.answer_sdp is not None
    receiver = next(t.receiver for t in watch.pc.getTransceivers() if t.kind == "video")
    await receiver._send_rtcp_pli(video_ssrc(watch.answer_sdp))


async def wait_log(daemon: DaemonProcess, text: str, timeout: float = WAIT) -> None:
    """Poll (bounded) until the daemon's log contains ``text``."""
    deadline = time.monotonic() + timeout
    while text not in daemon.log_text():
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{daemon.log_text()}"
        await asyncio.sleep(0.05)


async def watch_frames(viewer: Viewer, n: int = 30) -> WatchSession:
    watch = await viewer.watch(timeout=WAIT)
    await watch.wait_frames(n, WAIT)
    return watch


# --- streaming --------------------------------------------------------------------------


async def test_viewers_decode_the_cameras_hardware_h264(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    daemon = await start(daemon_factory, mosquitto, cam, config(hflip=True, rotation=180))
    alice = await viewer_factory(mosquitto, "alice")
    first = await watch_frames(alice)
    bob = await viewer_factory(mosquitto, "bob")
    second = await watch_frames(bob)
    assert first.keyframes[:1] == [0] and second.keyframes[:1] == [0]
    assert set(first.frame_sizes) == {(320, 240)}

    status = await daemon.wait_status(lambda s: s.get("camera") == "streaming", WAIT)
    assert status["encoder"] == "hardware" and status["faults"] == []
    assert "warnings" not in status
    state = cam.state()
    # What the daemon asked of picamera2, as the (fake) hardware saw it.
    assert state.encoder == {
        "class": "H264Encoder",
        "hardware": True,
        "bitrate": 500_000,
        "iperiod": 600,
        "repeat": True,
        "profile": "baseline",
        "framerate": 30,
    }
    assert state.config == {
        "size": [320, 240],
        "format": "YUV420",
        "frame_duration_us": 33333,
        "hflip": False,  # rotation 180 = hflip + vflip, then hflip again
        "vflip": True,
        "lores": None,  # 320x240 is smaller than the default substream: none configured
    }
    assert state.opens == 1 and state.running
    log = daemon.log_text()
    assert "camera imx708 (index 0) 320x240@30, hardware H.264 encoder" in log
    assert "not constrained baseline" not in log


async def test_idr_on_join_and_on_picture_loss(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    await start(daemon_factory, mosquitto, cam)
    alice = await viewer_factory(mosquitto, "alice")
    first = await watch_frames(alice, 45)
    assert first.keyframes == [0]
    forced = cam.state().key_frames_forced

    bob = await viewer_factory(mosquitto, "bob")
    second = await watch_frames(bob, 10)
    assert second.keyframes[:1] == [0]
    await first.wait_frames(first.frames + 5, WAIT)
    assert len(first.keyframes) >= 2 and first.keyframes[1] < 600, "bob's IDR reached alice"
    assert cam.state().key_frames_forced > forced, "the IDR came from force_key_frame()"

    before, forced = first.frames, cam.state().key_frames_forced
    await asyncio.sleep(1.1)  # past the hub's coalescing of keyframe requests
    await send_pli(first)
    await first.wait_frames(before + 40, WAIT)
    assert any(before <= k < 600 for k in first.keyframes[2:]), first.keyframes
    assert cam.state().key_frames_forced > forced


async def test_the_camera_runs_only_while_someone_watches(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    daemon = await start(daemon_factory, mosquitto, cam)
    assert (await daemon.wait_status(lambda s: True))["camera"] == "idle"
    assert cam.state().opens == 0, "nobody watches: the camera stays closed"
    alice = await viewer_factory(mosquitto, "alice")
    watch = await watch_frames(alice, 10)
    await cam.wait_state(lambda s: s.running and s.open, WAIT, "camera running")
    await watch.bye()
    await daemon.wait_status(lambda s: s.get("camera") == "idle", WAIT)
    state = await cam.wait_state(lambda s: not s.open, WAIT, "camera closed")
    assert not state.running and state.stops == 1
    again = await watch_frames(alice, 10)
    assert again.keyframes[:1] == [0]
    assert cam.state().opens == 2


# --- faults ----------------------------------------------------------------------------------

FAULTY = config(keyframe_interval=30)


def camera_fault(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: any(text in f for f in s.get("faults", []))


async def test_no_camera_at_start_then_a_camera_appears(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    cam.set(cameras=[])
    daemon = await start(daemon_factory, mosquitto, cam, FAULTY)
    alice = await viewer_factory(mosquitto, "alice")
    watch = await alice.watch(timeout=WAIT)
    status = await daemon.wait_status(camera_fault("no camera detected"), FAULT_WAIT)
    assert status["camera"] in ("fault", "starting")
    assert (
        "camera: no camera detected: check the ribbon cable and `rpicam-hello --list-cameras`"
        in status["faults"]
    )
    cam.set(cameras=["imx708"])
    await watch.wait_frames(30, FAULT_WAIT)  # the same session: nobody reconnected
    assert watch.keyframes[:1] == [0]
    await daemon.wait_status(lambda s: s.get("camera") == "streaming" and not s["faults"], WAIT)
    log = daemon.log_text()
    assert log.count("video source cannot start: no camera detected") == 1, "said once"
    assert "Traceback" not in log


async def test_a_camera_held_by_another_process_is_busy_until_released(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    daemon = await start(daemon_factory, mosquitto, cam, FAULTY)
    alice = await viewer_factory(mosquitto, "alice")
    with cam.hold():  # this test process holds the camera, as rpicam-vid would
        watch = await alice.watch(timeout=WAIT)
        status = await daemon.wait_status(camera_fault("camera 0 is busy"), FAULT_WAIT)
        assert status["faults"] == [
            "camera: camera 0 is busy: another process is using it (another peercam, "
            "rpicam-*, motion...; `sudo fuser -v /dev/media* /dev/video*` shows which)"
        ]
        assert watch.frames == 0
    await watch.wait_frames(30, FAULT_WAIT)
    await daemon.wait_status(lambda s: s.get("camera") == "streaming" and not s["faults"], WAIT)


async def test_a_stalled_encoder_is_restarted_and_the_viewer_resumes(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    daemon = await start(daemon_factory, mosquitto, cam, FAULTY)
    alice = await viewer_factory(mosquitto, "alice")
    watch = await watch_frames(alice)
    cam.set(wedge=1)  # the running camera stops delivering; a reopened one works
    status = await daemon.wait_status(camera_fault("no video frame for"), FAULT_WAIT)
    fault = next(f for f in status["faults"] if "no video frame" in f)
    assert re.fullmatch(
        r"camera: no video frame for \d+ s \(the camera stopped delivering: ribbon cable loose "
        r"or unplugged, or encoder stalled\): restarting capture",
        fault,
    ), fault
    stalled_at = watch.frames
    await watch.wait_frames(stalled_at + 30, FAULT_WAIT)  # same session, no reconnect
    assert watch.connection_state == "connected"
    assert any(k >= stalled_at for k in watch.keyframes), "resumed on an IDR"
    await daemon.wait_status(lambda s: s.get("camera") == "streaming" and not s["faults"], WAIT)
    assert cam.state().opens == 2


async def test_an_unplugged_camera_is_reported_and_picked_up_again(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    daemon = await start(daemon_factory, mosquitto, cam, FAULTY)
    alice = await viewer_factory(mosquitto, "alice")
    watch = await watch_frames(alice)
    cam.set(cameras=[])  # unplugged: frames stop, and reopening finds no camera
    await daemon.wait_status(camera_fault("no video frame for"), FAULT_WAIT)
    await daemon.wait_status(camera_fault("no camera detected"), FAULT_WAIT)
    unplugged_at = watch.frames
    cam.set(cameras=["imx708"])
    await watch.wait_frames(unplugged_at + 30, FAULT_WAIT)
    assert watch.connection_state == "connected"
    await daemon.wait_status(lambda s: s.get("camera") == "streaming" and not s["faults"], WAIT)


async def test_a_pi5_uses_the_software_encoder_and_says_so(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    cam.set(platform="pisp")
    daemon = await start(daemon_factory, mosquitto, cam)
    status = await daemon.wait_status(lambda s: "encoder" in s, WAIT)
    assert status["encoder"] == "software"
    assert status["warnings"] == [
        "camera: software H.264 encoding (this Pi has no hardware encoder, e.g. a Pi 5): high "
        "CPU use; lower [camera] width/height/fps if frames drop"
    ]
    alice = await viewer_factory(mosquitto, "alice")
    watch = await watch_frames(alice)
    assert watch.keyframes[:1] == [0]
    assert cam.state().encoder["class"] == "LibavH264Encoder"
    assert cam.state().encoder["profile"] == "baseline"
    assert "WARNING peercam.camera: camera: software H.264 encoding" in daemon.log_text()


# --- bandwidth ---------------------------------------------------------------------------------


async def test_the_encoder_follows_the_lowest_viewers_bandwidth_estimate(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    daemon = await start(daemon_factory, mosquitto, cam, config(min_bitrate=100_000))
    alice = await viewer_factory(mosquitto, "alice")
    watch = await watch_frames(alice)
    assert watch.pc is not None and watch.answer_sdp is not None
    receiver = next(t.receiver for t in watch.pc.getTransceivers() if t.kind == "video")
    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP,
        ssrc=1,
        media_ssrc=0,
        fci=pack_remb_fci(200_000, [video_ssrc(watch.answer_sdp)]),
    )
    await receiver._send_rtcp(remb)
    # 85 % of 200 kbit/s for video: VIDIOC_S_CTRL(V4L2_CID_MPEG_VIDEO_BITRATE) reached the device.
    await cam.wait_state(lambda s: 170_000 in s.bitrates, WAIT, "bitrate 170 kbit/s")
    await wait_log(daemon, "camera: bitrate 500 -> 170 kbit/s (lowest viewer estimate 200 kbit/s)")
    await watch.wait_frames(watch.frames + 30, WAIT)  # and the picture goes on


async def test_repeated_camera_restarts_leave_no_threads_or_fds_behind(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    cam: FakeCamera,
) -> None:
    from tests.daemon_resources import REPORTING, idle_baseline, settled

    cfg = {**FAULTY, "diagnostics": REPORTING["diagnostics"]}
    daemon = await start(daemon_factory, mosquitto, cam, cfg)
    # Baseline with the camera and its encoder threads run once and stopped again.
    alice = await viewer_factory(mosquitto, "alice")
    first = await watch_frames(alice, 10)
    await first.bye()
    baseline = await idle_baseline(daemon)
    watch = await watch_frames(alice, 10)
    for wedge in (1, 2):  # the encoder wedges twice; each time capture is restarted
        cam.set(wedge=wedge)
        await daemon.wait_status(camera_fault("no video frame for"), FAULT_WAIT)
        resumed_from = watch.frames
        await watch.wait_frames(resumed_from + 10, FAULT_WAIT)
    assert cam.state().opens >= 4
    await watch.bye()
    report = await settled(daemon, baseline, timeout=FAULT_WAIT)
    assert report.threads <= baseline.threads and report.fds <= baseline.fds
