"""The picamera2 source in this process: hand-over, pts, errors, key frames, bitrate.

Unit tests of ``FrameHandover`` need no picamera2; the rest runs the source
against the fake picamera2 (``peercam.fakehw``) imported in this process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peercam import fakehw
from peercam.config import CameraConfig
from peercam.fakehw import control
from peercam.media import EncodedFrame
from peercam.sources.picamera2_source import (
    CameraError,
    FrameHandover,
    Picamera2Api,
    Picamera2Source,
    describe_open_error,
    hub_output_class,
    load_picamera2,
)
from peercam.sources.test_pattern import PatternRenderer, open_encoder
from tests.waiting import wait_until

WAIT = 20.0


def h264_frames(n: int = 3) -> list[bytes]:
    """Real access units: an IDR with SPS/PPS, then P frames."""
    import av

    encoder = open_encoder(width=160, height=120, fps=30, bitrate=200_000, keyframe_interval=600)
    renderer = PatternRenderer(160, 120, "t")
    out: list[bytes] = []
    for i in range(n + 5):
        frame = av.VideoFrame.from_ndarray(renderer.render(i / 30, 0), format="yuv420p")
        frame.pts = i * 33_333
        out += [bytes(p) for p in encoder.encode(frame)]
    return out[:n]


class Collector:
    def __init__(self) -> None:
        self.frames: list[tuple[int, EncodedFrame]] = []
        self.threads: set[int] = set()
        self.changed = asyncio.Event()

    def deliver(self, generation: int, frame: EncodedFrame) -> None:
        self.threads.add(threading.get_ident())
        self.frames.append((generation, frame))
        self.changed.set()

    async def wait(self, n: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.frames) < n:
                self.changed.clear()
                await self.changed.wait()


# --- FrameHandover ----------------------------------------------------------------------


async def test_frames_reach_the_loop_thread_with_keyframes_read_from_the_bytes() -> None:
    idr, p1, p2 = h264_frames()
    sink = Collector()
    handover = FrameHandover(
        asyncio.get_running_loop(), sink.deliver, generation=7, pts_base=0, frame_interval_us=33_333
    )

    def encoder_thread() -> None:  # picamera2 flags every frame a keyframe in its base class
        handover.outputframe(idr, True, 0)
        handover.outputframe(bytearray(p1), True, 33_333)
        handover.outputframe(memoryview(p2), False, 66_666)
        handover.outputframe(b"", False, 99_999)  # empty buffers are dropped

    thread = threading.Thread(target=encoder_thread)
    thread.start()
    thread.join()
    await sink.wait(3)
    assert sink.threads == {threading.get_ident()}, "delivered on the event loop's thread"
    assert [g for g, _ in sink.frames] == [7, 7, 7]
    assert [f.keyframe for _, f in sink.frames] == [True, False, False]
    assert [f.data for _, f in sink.frames] == [idr, p1, p2]
    assert [f.pts for _, f in sink.frames] == [0, 33_333, 66_666]


async def test_pts_stay_monotonic_across_encoder_restarts() -> None:
    loop = asyncio.get_running_loop()
    sink = Collector()
    first = FrameHandover(loop, sink.deliver, generation=1, pts_base=0, frame_interval_us=33_333)
    for ts in (0, 33_333, 66_666):
        first.outputframe(b"\x00\x00\x00\x01\x41x", False, ts)
    # A new encoder starts its timestamps at 0 again; this run continues the timeline.
    second = FrameHandover(
        loop, sink.deliver, generation=2, pts_base=first.next_pts, frame_interval_us=33_333
    )
    for ts in (0, 33_333, 20_000, 100_000):  # even an encoder that goes backwards
        second.outputframe(b"\x00\x00\x00\x01\x41x", False, ts)
    await sink.wait(7)
    pts = [f.pts for _, f in sink.frames]
    assert pts[:3] == [0, 33_333, 66_666]
    assert pts[3:] == [99_999, 133_332, 133_333, 199_999]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


async def test_an_encoder_first_timestamp_is_the_runs_origin() -> None:
    sink = Collector()
    handover = FrameHandover(
        asyncio.get_running_loop(), sink.deliver, generation=1, pts_base=1_000, frame_interval_us=10
    )
    handover.outputframe(b"\x00\x00\x01\x41a", False, 5_000_000)
    handover.outputframe(b"\x00\x00\x01\x41b", False, 5_040_000)
    handover.outputframe(b"\x00\x00\x01\x41c", False, None)  # no timestamp: own clock, still later
    await sink.wait(3)
    pts = [f.pts for _, f in sink.frames]
    assert pts[:2] == [1_000, 41_000] and pts[2] > pts[1]


async def test_nothing_is_posted_after_close_or_once_the_loop_is_gone() -> None:
    sink = Collector()
    handover = FrameHandover(
        asyncio.get_running_loop(), sink.deliver, generation=1, pts_base=0, frame_interval_us=1
    )
    handover.close()
    handover.outputframe(b"\x00\x00\x01\x41a", False, 0)
    dead = asyncio.new_event_loop()
    dead.close()
    orphan = FrameHandover(dead, sink.deliver, generation=1, pts_base=0, frame_interval_us=1)
    orphan.outputframe(b"\x00\x00\x01\x41a", False, 0)  # must not raise on the encoder thread
    assert orphan.closed
    await asyncio.sleep(0.05)
    assert sink.frames == []


# --- errors ---------------------------------------------------------------------------------


def test_open_errors_become_one_precise_line() -> None:
    cams = [{"Model": "imx708", "Num": 0}]
    assert describe_open_error(IndexError("list index out of range"), 0, []) == (
        "no camera detected: check the ribbon cable and `rpicam-hello --list-cameras`"
    )
    assert describe_open_error(IndexError(), 1, cams) == (
        "no camera 1: 1 camera(s) detected (0: imx708); set [camera] index to one of them"
    )
    # picamera2 0.3.37+ says it with a RuntimeError instead: the same sentences.
    missing = (
        'No camera number {} found - use "rpicam-hello --list-cameras" to check connected cameras'
    )
    assert describe_open_error(RuntimeError(missing.format(0)), 0, []) == (
        "no camera detected: check the ribbon cable and `rpicam-hello --list-cameras`"
    )
    assert describe_open_error(RuntimeError(missing.format(1)), 1, cams) == (
        "no camera 1: 1 camera(s) detected (0: imx708); set [camera] index to one of them"
    )
    try:
        try:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        except RuntimeError as exc:
            raise RuntimeError("Camera __init__ sequence did not complete.") from exc
    except RuntimeError as outer:
        busy = outer
    assert describe_open_error(busy, 0, cams).startswith(
        "camera 0 is busy: another process is using it"
    )
    try:
        try:
            raise OSError(5, "Input/output error")
        except OSError as exc:
            raise RuntimeError("Camera __init__ sequence did not complete.") from exc
    except RuntimeError as outer:
        other = outer
    assert describe_open_error(other, 0, cams) == (
        "camera 0 cannot be opened: [Errno 5] Input/output error"
    )


# --- the source on the fake picamera2 ----------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(control.ENV_DIR, str(tmp_path))
    fakehw.install()
    yield tmp_path


def camera_config(**kw: Any) -> CameraConfig:
    base: dict[str, Any] = {
        "source": "picamera2",
        "width": 320,
        "height": 240,
        "fps": 30,
        "bitrate": 500_000,
        "keyframe_interval": 600,
    }
    return CameraConfig(**{**base, **kw})


class Sink:
    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []
        self.faults: list[str | None] = []
        self.changed = asyncio.Event()

    def __call__(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)
        self.changed.set()

    def fault(self, message: str | None) -> None:
        self.faults.append(message)

    async def wait(self, n: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.frames) < n:
                self.changed.clear()
                await self.changed.wait()


async def test_the_output_takes_the_three_argument_calls_of_old_picamera2(fake: Path) -> None:
    api = load_picamera2()
    assert api.fake and not api.software_encoder
    sink = Collector()
    handover = FrameHandover(
        asyncio.get_running_loop(), sink.deliver, generation=1, pts_base=0, frame_interval_us=1
    )
    output = hub_output_class(api.Output)(handover)
    assert isinstance(output, api.Output)
    idr = h264_frames(1)[0]
    output.outputframe(idr, True, 0)  # picamera2 0.3.17
    output.outputframe(idr, True, 10, None, False)  # 0.3.23 and later
    output.outputframe(b"aac", True, 20, object(), True)  # picamera2's audio: not ours
    await sink.wait(2)
    await asyncio.sleep(0.05)
    assert len(sink.frames) == 2 and all(f.keyframe for _, f in sink.frames)


async def test_pts_continue_across_stop_and_start(fake: Path) -> None:
    source = Picamera2Source(camera_config(), load_picamera2())
    sink = Sink()
    await source.start(sink, sink.fault)
    await sink.wait(10)
    await source.stop()
    first_run = len(sink.frames)
    await asyncio.sleep(0.1)
    assert len(sink.frames) == first_run, "nothing after stop()"
    await source.start(sink, sink.fault)
    await sink.wait(first_run + 10)
    await source.stop()
    pts = [f.pts for f in sink.frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    assert sink.frames[0].keyframe and sink.frames[first_run].keyframe, "each run opens on an IDR"
    assert 0 < pts[first_run] - pts[first_run - 1] <= 40_000, "no jump back, no gap"
    assert control.read_state(fake).opens == 2 and not control.read_state(fake).open


async def test_a_keyframe_request_without_force_key_frame_uses_the_v4l2_control(
    fake: Path,
) -> None:
    api = load_picamera2()

    class OldH264Encoder(api.H264Encoder):  # type: ignore[name-defined, misc]
        """picamera2 before 0.3.32: no force_key_frame()."""

        @property
        def force_key_frame(self) -> Any:
            raise AttributeError("force_key_frame")

    old = Picamera2Api(**{**api.__dict__, "H264Encoder": OldH264Encoder})
    source = Picamera2Source(camera_config(), old)
    sink = Sink()
    await source.start(sink, sink.fault)
    try:
        await sink.wait(5)
        assert not hasattr(source._run.encoder, "force_key_frame")  # type: ignore[union-attr]
        source.request_keyframe()
        async with asyncio.timeout(WAIT):
            while sum(f.keyframe for f in sink.frames) < 2:
                sink.changed.clear()
                await sink.changed.wait()
    finally:
        await source.stop()
    assert control.read_state(fake).key_frames_forced == 1


async def test_the_software_encoder_follows_the_estimate_through_libx264(fake: Path) -> None:
    api = load_picamera2()
    pi5 = Picamera2Api(**{**api.__dict__, "H264Encoder": api.LibavH264Encoder})
    source = Picamera2Source(camera_config(min_bitrate=100_000), pi5)
    assert source.encoder_kind == "software" and source.warnings
    sink = Sink()
    await source.start(sink, sink.fault)
    try:
        await sink.wait(3)
        source.set_bandwidth_estimate(200_000)
        assert source.bitrate == 170_000
        assert source._run.encoder._stream.codec_context.bit_rate == 170_000  # type: ignore[union-attr]
        await sink.wait(len(sink.frames) + 5)  # and it keeps encoding
    finally:
        await source.stop()


async def test_a_held_back_rise_happens_without_a_new_estimate(fake: Path) -> None:
    """The slow viewer leaves moments after lowering the rate; the others send no REMB."""
    source = Picamera2Source(camera_config(min_bitrate=100_000), load_picamera2())
    source.governor.raise_gap = 0.3  # 5 s in the daemon
    sink = Sink()
    await source.start(sink, sink.fault)
    try:
        source.set_bandwidth_estimate(200_000)
        assert source.bitrate == 170_000
        source.set_bandwidth_estimate(None)  # the slow viewer left: too soon to rise
        assert source.bitrate == 170_000
        await wait_until(lambda: source.bitrate == 500_000, "the bitrate never rose back", 10)
        assert control.read_state(fake).bitrates == [170_000, 255_000, 382_500, 500_000]
    finally:
        await source.stop()
    assert source._bitrate_recheck is None


async def test_an_estimate_that_arrived_before_the_camera_opened_applies_at_start(
    fake: Path,
) -> None:
    source = Picamera2Source(camera_config(min_bitrate=100_000), load_picamera2())
    source.set_bandwidth_estimate(200_000)  # not running: remembered
    sink = Sink()
    await source.start(sink, sink.fault)
    try:
        assert source.bitrate == 170_000
        assert control.read_state(fake).bitrates == [170_000]
    finally:
        await source.stop()


async def test_a_camera_that_opens_after_its_start_was_given_up_is_closed_again(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub gives a start 20 s; libcamera answering later must not leave the camera busy."""
    source = Picamera2Source(camera_config(), load_picamera2())
    slow_open = source._open

    def opens_late(handover: Any) -> Any:
        time.sleep(0.5)
        return slow_open(handover)

    monkeypatch.setattr(source, "_open", opens_late)
    sink = Sink()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(source.start(sink, sink.fault), 0.1)

    def closed_again() -> bool:
        state = control.read_state(fake)
        return state.opens == 1 and not state.open

    await wait_until(closed_again, "the late camera was left open")
    monkeypatch.undo()
    await source.start(sink, sink.fault)  # not busy: it starts
    try:
        await sink.wait(3)
    finally:
        await source.stop()
    assert sink.faults == []


async def test_start_failures_are_camera_errors(fake: Path) -> None:
    control.write_control(fake, cameras=[])
    source = Picamera2Source(camera_config(), load_picamera2())
    sink = Sink()
    with pytest.raises(CameraError, match=r"^no camera detected: check the ribbon cable"):
        await source.start(sink, sink.fault)
    control.write_control(fake, cameras=["imx708"])
    big = Picamera2Source(camera_config(width=3840, height=2160, index=0), load_picamera2())
    control.write_control(fake, cameras=["ov5647"])  # 2592x1944 sensor
    with pytest.raises(CameraError, match=r"^camera ov5647 refused 3840x2160@30"):
        await big.start(sink, sink.fault)
    assert not control.read_state(fake).open, "a failed start leaves the camera closed"
    assert sink.frames == []


async def test_the_configured_camera_index_picks_the_camera(fake: Path) -> None:
    control.write_control(fake, cameras=["imx708", "imx219"])
    source = Picamera2Source(camera_config(index=1), load_picamera2())
    sink = Sink()
    await source.start(sink, sink.fault)
    try:
        await sink.wait(3)
        assert source.model == "imx219" and control.read_state(fake).camera == 1
    finally:
        await source.stop()
    missing = Picamera2Source(camera_config(index=2), load_picamera2())
    with pytest.raises(
        CameraError, match=r"^no camera 2: 2 camera\(s\) detected \(0: imx708, 1: imx219\)"
    ):
        await missing.start(sink, sink.fault)
