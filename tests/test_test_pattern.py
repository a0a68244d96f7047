"""The test-pattern camera: H.264 structure, timing metadata, timecode, lifecycle.

Everything is checked on real libx264 output decoded with PyAV's h264
decoder.  Timing assertions are about structure (monotonic, multiples of the
frame interval), never about how fast this machine is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import time
from collections.abc import Callable

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from peercam.config import MotionConfig
from peercam.media import EncodedFrame
from peercam.motion import MotionDetector
from peercam.sources import h264, timecode
from peercam.sources.substream import SubstreamSpec
from peercam.sources.test_pattern import (
    PatternRenderer,
    TestPatternSource,
    h264_level,
    open_encoder,
)
from tests.waiting import wait_until

FPS = 60  # high rate, small pictures: the tests stay fast
W, H = 320, 240
INTERVAL_US = 1_000_000 / FPS


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class Collector:
    """A sink that records frames and faults and can wait for a frame count."""

    def __init__(self, on_frame: Callable[[int, EncodedFrame], None] | None = None) -> None:
        self.frames: list[EncodedFrame] = []
        self.faults: list[str | None] = []
        self._on_frame = on_frame
        self._want = 0
        self._enough = asyncio.Event()

    def sink(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)
        if self._on_frame is not None:
            self._on_frame(len(self.frames) - 1, frame)
        if len(self.frames) >= self._want:
            self._enough.set()

    def fault(self, message: str | None) -> None:
        self.faults.append(message)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[EncodedFrame]:
        self._want = count
        self._enough.clear()
        if len(self.frames) < count:
            await asyncio.wait_for(self._enough.wait(), timeout)
        return self.frames


def make_source(**overrides: int | str) -> TestPatternSource:
    params: dict = dict(
        width=W, height=H, fps=FPS, bitrate=500_000, keyframe_interval=8, name="test cam"
    )
    params.update(overrides)
    return TestPatternSource(**params)


async def run_source(source: TestPatternSource, count: int, collector: Collector | None = None):
    collector = collector or Collector()
    await source.start(collector.sink, collector.fault)
    try:
        await collector.wait_for(count)
    finally:
        await source.stop()
    return collector.frames


def decode(frames: list[EncodedFrame]) -> list[av.VideoFrame]:
    """Decode access units in order (flushing at the end)."""
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    out: list[av.VideoFrame] = []
    for frame in frames:
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        out.extend(decoder.decode(packet))
    out.extend(decoder.decode(None))
    return out


def luma(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="yuv420p")[: frame.height]


# --------------------------------------------------------------------------
# h264 helpers
# --------------------------------------------------------------------------

SPS = bytes.fromhex("6742c01fda014016e8")
PPS = bytes.fromhex("68ce3c80")
IDR = bytes.fromhex("65888400ff")
SLICE = bytes.fromhex("419a2016")


def test_iter_nal_units_handles_3_and_4_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01" + IDR
    units = [(t, bytes(p)) for t, p in h264.iter_nal_units(data)]
    assert units == [(7, SPS), (8, PPS), (5, IDR)]
    assert h264.is_idr(data) and h264.has_parameter_sets(data)
    assert h264.nal_types(b"junk\x00\x00\x01" + SLICE + b"\x00\x00") == [1]


def test_helpers_on_frames_without_idr_or_parameter_sets() -> None:
    p_frame = b"\x00\x00\x00\x01" + SLICE
    assert not h264.is_idr(p_frame)
    assert not h264.has_parameter_sets(p_frame)
    assert not h264.has_parameter_sets(b"\x00\x00\x01" + SPS + b"\x00\x00\x01" + IDR)
    assert h264.sps_profile(p_frame) is None
    assert h264.profile_level_id(p_frame) is None
    assert list(h264.iter_nal_units(b"")) == []


def test_sps_profile_and_profile_level_id() -> None:
    data = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS
    assert h264.sps_profile(data) == (66, 0xC0, 31)
    assert h264.profile_level_id(data) == "42c01f"
    assert h264.is_constrained_baseline(data)
    plain_baseline = b"\x00\x00\x01" + bytes.fromhex("6742001fda")
    assert h264.profile_level_id(plain_baseline) == "42001f"
    assert not h264.is_constrained_baseline(plain_baseline)


def test_sps_profile_removes_emulation_prevention() -> None:
    # profile 66, constraint byte 0x00, level 0x00 would read "00 00 03 00" on the wire
    escaped = b"\x00\x00\x01" + bytes.fromhex("674200000300e0")
    assert h264.sps_profile(escaped) == (66, 0, 0)


# --------------------------------------------------------------------------
# timecode
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(320, 240), (640, 480), (1280, 720), (1920, 1080), (354, 250)])
def test_timecode_round_trips_on_raw_planes(size: tuple[int, int]) -> None:
    width, height = size
    rng = np.random.default_rng(1)
    for t_us in (0, 1, timecode.MODULUS - 1, time.time_ns() // 1000, 123_456_789_012_345):
        plane = rng.integers(0, 256, (height, width), dtype=np.uint8)
        timecode.stamp(plane, t_us)
        assert timecode.read(plane) == t_us % timecode.MODULUS


def test_timecode_rejects_missing_or_damaged_codes() -> None:
    blank = np.full((480, 640), 128, np.uint8)
    assert timecode.read(blank) is None
    plane = blank.copy()
    timecode.stamp(plane, 987_654_321)
    lay = timecode.layout(640, 480)
    damaged = plane.copy()
    x = lay.x0 + 20 * lay.cell  # a data cell: flip it
    damaged[lay.y0 : lay.y1, x : x + lay.cell] = 255 - damaged[lay.y0, x]
    assert timecode.read(damaged) is None
    assert timecode.read(np.zeros((100, 160), np.uint8)) is None  # too small
    assert not timecode.fits(160, 120)
    with pytest.raises(ValueError):
        timecode.stamp(np.zeros((120, 160), np.uint8), 1)


def test_timecode_unwrap() -> None:
    now = time.time_ns() // 1000
    for t in (now, now - 5_000_000, now + 5_000_000):
        assert timecode.unwrap(t % timecode.MODULUS, now) == t


def encode_stamped(
    width: int, height: int, bitrate: int, picture: Callable[[int, int], np.ndarray]
) -> tuple[list[int], list[av.VideoFrame]]:
    """Encode 12 pictures (``picture(i, t_us)`` gives a packed yuv420p buffer) and decode them.

    Returns the stamped times (mod 2**48) and the decoded frames.
    """
    encoder = open_encoder(
        width=width, height=height, fps=30, bitrate=bitrate, keyframe_interval=30
    )
    sent: list[int] = []
    frames: list[EncodedFrame] = []
    t0 = time.time_ns() // 1000
    for i in range(12):
        t_us = t0 + i * 33_333
        frame = av.VideoFrame.from_ndarray(picture(i, t_us), format="yuv420p")
        frame.pts = i * 33_333
        frames.extend(EncodedFrame(bytes(p), int(p.pts)) for p in encoder.encode(frame))
        sent.append(t_us % timecode.MODULUS)
    return sent, decode(frames)


@pytest.mark.parametrize(
    ("width", "height", "bitrate"),
    [(640, 480, 1_000_000), (1280, 720, 2_000_000), (1280, 720, 1_000_000)],
)
def test_timecode_survives_h264_at_low_bitrate(width: int, height: int, bitrate: int) -> None:
    """The real pattern plus strong noise everywhere (barcode included) still reads exactly."""
    renderer = PatternRenderer(width, height, "noisy")
    rng = np.random.default_rng(2)

    def picture(i: int, t_us: int) -> np.ndarray:
        clean = renderer.render(i / 30, t_us).astype(np.int16)
        noise = rng.integers(-40, 41, clean.shape, dtype=np.int16)
        return np.clip(clean + noise, 0, 255).astype(np.uint8)

    sent, decoded = encode_stamped(width, height, bitrate, picture)
    assert [timecode.read(luma(f)) for f in decoded] == sent


@pytest.mark.parametrize(
    ("width", "height", "bitrate"), [(640, 480, 1_000_000), (1280, 720, 2_000_000)]
)
def test_timecode_never_reads_a_wrong_time_from_pure_noise(
    width: int, height: int, bitrate: int
) -> None:
    """Full-range noise overflows the VBV: x264 then sends near-empty (skipped) pictures.

    A reader may see the previous picture's code there (it *is* the previous
    picture) or nothing, but never a time that was not stamped.
    """
    rng = np.random.default_rng(3)

    def picture(i: int, t_us: int) -> np.ndarray:
        buf = np.full((height * 3 // 2, width), 128, np.uint8)
        buf[:height] = rng.integers(0, 256, (height, width), dtype=np.uint8)
        timecode.stamp(buf[:height], t_us)
        return buf

    sent, decoded = encode_stamped(width, height, bitrate, picture)
    reads = [timecode.read(luma(f)) for f in decoded]
    assert reads[0] == sent[0]
    for i, value in enumerate(reads):
        assert value is None or value in sent[: i + 1]
    assert sum(r == s for r, s in zip(reads, sent, strict=True)) >= len(sent) // 2


# --------------------------------------------------------------------------
# encoder settings
# --------------------------------------------------------------------------


def test_level_is_the_lowest_that_fits_but_at_least_3_1() -> None:
    assert h264_level(320, 240, 30, 500_000) == "3.1"
    assert h264_level(640, 480, 30, 1_000_000) == "3.1"
    assert h264_level(1280, 720, 30, 2_000_000) == "3.1"
    assert h264_level(1280, 720, 60, 2_000_000) == "3.2"
    assert h264_level(1920, 1080, 30, 4_000_000) == "4"


def test_1080p_sps_says_level_4() -> None:
    encoder = open_encoder(width=1920, height=1080, fps=30, bitrate=4_000_000, keyframe_interval=30)
    renderer = PatternRenderer(1920, 1080, "big")
    frame = av.VideoFrame.from_ndarray(renderer.render(0.0, 0), format="yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in encoder.encode(frame))
    # libx264 "baseline" = constraint_set0+1 (0xc0): constrained baseline, not 0xe0
    assert h264.profile_level_id(data) == "42c028"


def test_noise_pattern_spends_the_configured_bitrate_and_keeps_the_timecode() -> None:
    """Flat bars use a fraction of the bitrate; grain makes libx264 use about all of it."""
    width, height, bitrate, n = 640, 360, 1_000_000, 60

    def encode(pattern: str) -> tuple[float, list[int | None], list[int]]:
        renderer = PatternRenderer(width, height, "grain", pattern)
        encoder = open_encoder(
            width=width, height=height, fps=30, bitrate=bitrate, keyframe_interval=60
        )
        frames: list[EncodedFrame] = []
        sent: list[int] = []
        for i in range(n):
            t_us = 1_700_000_000_000_000 + i * 33_333
            frame = av.VideoFrame.from_ndarray(renderer.render(i / 30, t_us), format="yuv420p")
            frame.pts = i * 33_333
            frames.extend(EncodedFrame(bytes(p), int(p.pts)) for p in encoder.encode(frame))
            sent.append(t_us % timecode.MODULUS)
        rate = sum(len(f.data) for f in frames) * 8 / (n / 30)
        return rate, [timecode.read(luma(f)) for f in decode(frames)], sent

    bars_rate, _, _ = encode("bars")
    noise_rate, reads, sent = encode("noise")
    assert bars_rate < 0.6 * bitrate
    assert 0.8 * bitrate < noise_rate < 1.3 * bitrate
    assert reads == sent


def test_renderer_refuses_an_unknown_pattern() -> None:
    with pytest.raises(ValueError, match="allowed: bars, noise"):
        PatternRenderer(320, 240, "x", "plaid")


def test_renderer_works_below_the_timecode_minimum() -> None:
    renderer = PatternRenderer(160, 120, "tiny")
    first = renderer.render(0.0, 0).copy()
    second = renderer.render(0.5, 500_000)
    assert not np.array_equal(first, second)


# --------------------------------------------------------------------------
# the source
# --------------------------------------------------------------------------


async def test_stream_structure() -> None:
    keyint = 8
    source = make_source(keyframe_interval=keyint)
    assert source.info.codec == "H264"
    assert (source.info.width, source.info.height, source.info.fps) == (W, H, FPS)
    frames = await run_source(source, 3 * keyint + 2)

    assert frames[0].keyframe
    for i, frame in enumerate(frames):
        types = h264.nal_types(frame.data)
        assert frame.keyframe == (h264.NAL_IDR in types), (i, types)
        assert types.count(h264.NAL_IDR) + types.count(h264.NAL_SLICE) == 1, types  # one slice
        if frame.keyframe:
            idr = types.index(h264.NAL_IDR)
            assert h264.NAL_SPS in types[:idr] and h264.NAL_PPS in types[:idr], types
            assert h264.is_constrained_baseline(frame.data)
            profile_idc, flags, level = h264.sps_profile(frame.data)
            assert (profile_idc, flags & h264.CONSTRAINT_SET1, level) == (66, 0x40, 31)
            assert h264.profile_level_id(frame.data) == "42c01f"  # what libx264 really emits
        else:
            assert not h264.has_parameter_sets(frame.data)

    # no request was made: IDRs exactly every keyint encoded frames
    assert [i for i, f in enumerate(frames) if f.keyframe] == list(range(0, len(frames), keyint))

    pts = [f.pts for f in frames]
    assert pts[0] < 100_000  # starts near 0
    steps = np.diff(pts)
    assert (steps > 0).all()
    # slots may be skipped on a busy machine, but every step is a whole number of intervals
    multiples = steps / INTERVAL_US
    assert np.allclose(multiples, np.round(multiples), atol=0.01)
    assert statistics.median(steps) == pytest.approx(INTERVAL_US, abs=1)

    decoded = decode(frames)
    assert len(decoded) == len(frames)
    assert [f.pts for f in decoded] == pts  # decode order == presentation order
    assert all(f.pict_type != PictureType.B for f in decoded)

    # the capture-time barcode survives and rises frame by frame, close to wall clock
    codes = [timecode.read(luma(f)) for f in decoded]
    assert None not in codes
    assert all(b > a for a, b in itertools.pairwise(codes))
    now = time.time_ns() // 1000
    assert abs(timecode.unwrap(codes[-1], now) - now) < 60_000_000

    # the picture moves (compare the colour-bar area, above clock and barcode)
    top = slice(0, H // 2)
    assert not np.array_equal(luma(decoded[0])[top], luma(decoded[-1])[top])


async def test_request_keyframe_gives_an_idr_within_two_frames() -> None:
    source = make_source(keyframe_interval=600)
    requested_at: list[int] = []

    def on_frame(index: int, frame: EncodedFrame) -> None:
        if index in (5, 15):
            requested_at.append(index)
            for _ in range(5):  # repeated requests coalesce into one IDR
                source.request_keyframe()

    frames = await run_source(source, 25, Collector(on_frame))
    idrs = [i for i, f in enumerate(frames) if f.keyframe]
    assert idrs[0] == 0
    for index in requested_at:
        following = [i for i in idrs if index < i <= index + 2]
        assert len(following) == 1, (index, idrs)
    assert len(idrs) <= 1 + 2 * len(requested_at)  # a race may split one request, not five


async def test_stop_then_start_continues_pts_and_starts_with_an_idr() -> None:
    source = make_source()
    await source.stop()  # stop before start: no-op
    collector = Collector()
    first = list(await run_source(source, 5, collector))
    await source.stop()  # idempotent
    await asyncio.sleep(0.05)
    assert len(collector.frames) == len(first)  # nothing delivered after stop()

    second = await run_source(source, 5)
    assert second[0].keyframe and h264.has_parameter_sets(second[0].data)
    assert second[0].pts > first[-1].pts
    pts = [f.pts for f in first + second]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert len(decode(first + second)) == len(first) + len(second)


async def test_fault_is_reported_then_recovery(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source(keyframe_interval=600)
    renderer = source._renderer
    real_render = renderer.render
    calls = 0

    def flaky_render(elapsed: float, t_us: int) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls in (4, 5):
            raise RuntimeError("sensor on fire")
        return real_render(elapsed, t_us)

    monkeypatch.setattr(renderer, "render", flaky_render)
    collector = Collector()
    with caplog.at_level(logging.ERROR, logger="peercam.camera"):
        await run_source(source, 8, collector)

    assert len(collector.faults) == 2
    message = collector.faults[0]
    assert message is not None and "sensor on fire" in message and "RuntimeError" in message
    assert collector.faults[1] is None
    assert any("sensor on fire" in r.getMessage() for r in caplog.records)
    # after the fault the encoder restarts, so viewers get an IDR at once
    assert [i for i, f in enumerate(collector.frames) if f.keyframe] == [0, 3]


async def test_start_twice_is_harmless() -> None:
    source = make_source()
    collector = Collector()
    await source.start(collector.sink, collector.fault)
    await source.start(collector.sink, collector.fault)
    try:
        await collector.wait_for(3)
    finally:
        await source.stop()
    assert not source.running


async def test_substream_and_motion_run_together() -> None:
    """The test pattern's substream encode and motion pictures at once (the Pi shares lores)."""
    source = make_source(
        width=640, height=360, fps=30, keyframe_interval=30, pattern="doorway",
        substream=SubstreamSpec(320, 180, 150_000, 30),
    )  # fmt: skip
    motion = MotionDetector(
        MotionConfig(enabled=True, fps=10, quiet=0.5, min_interval=60),
        on_start=lambda: None,
        on_end=lambda seconds: None,
    )
    source.set_motion_sink(motion.feed, fps=10, width=160)
    low = Collector()
    await source.attach_lores(low.sink, low.fault)
    main = Collector()
    await source.start(main.sink, main.fault)
    try:
        await low.wait_for(20)
        await wait_until(lambda: motion.pictures >= 10, "motion pictures", timeout=10)
        assert motion.events == 0, "the still doorway scene must not move"
        source.walk_visitor()
        await wait_until(lambda: motion.events == 1 and not motion.active, "one visit", 20)
        await main.wait_for(len(main.frames) + 10)
    finally:
        await source.stop()
    assert motion.events == 1
    assert {(f.width, f.height) for f in decode(low.frames)} == {(320, 180)}
    assert {(f.width, f.height) for f in decode(main.frames)} == {(640, 360)}
    assert low.faults == [] and main.faults == []
