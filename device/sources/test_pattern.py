"""A synthetic camera: a moving test pattern encoded with libx264.

It behaves like the picamera2 path on a Pi (one background "hardware" thread
that captures, encodes and hands access units to the event loop), so the
whole daemon, the dashboard and the latency tooling can run on any machine.
The picture carries the device name, a wall clock and a machine-readable
capture-time barcode (see ``timecode``) for glass-to-glass measurements.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.frame import PictureType

from ..media import TIME_BASE, EncodedFrame, FaultSink, FrameSink, VideoInfo
from ..threads import in_thread
from . import h264, timecode
from .substream import SubstreamSpec
from .threaded import Run, ThreadedSource

log = logging.getLogger("peercam.camera")

# --------------------------------------------------------------------------
# Encoder settings
# --------------------------------------------------------------------------

#: (level, MaxMBPS, MaxFS, MaxBR kbit/s) from H.264 table A-1, from 3.1 up:
#: 3.1 is the floor because the SDP we offer says 42e01f.
_LEVELS: tuple[tuple[str, int, int, int], ...] = (
    ("3.1", 108_000, 3_600, 14_000),
    ("3.2", 216_000, 5_120, 20_000),
    ("4", 245_760, 8_192, 20_000),
    ("4.1", 245_760, 8_192, 50_000),
    ("4.2", 522_240, 8_704, 50_000),
    ("5", 589_824, 22_080, 135_000),
    ("5.1", 983_040, 36_864, 240_000),
    ("5.2", 2_073_600, 36_864, 240_000),
)

#: VBV buffer in seconds of the target bitrate: small enough that an IDR does
#: not become a long burst on the viewer's link, large enough for its quality.
_VBV_SECONDS = 0.5


def h264_level(width: int, height: int, fps: int, bitrate: int) -> str:
    """The lowest H.264 level (at least 3.1) that fits the picture size, rate and bitrate."""
    mb_w, mb_h = -(-width // 16), -(-height // 16)
    frame_mbs = mb_w * mb_h
    for name, max_mbps, max_fs, max_br in _LEVELS:
        fits_size = frame_mbs <= max_fs and max(mb_w, mb_h) ** 2 <= 8 * max_fs
        if fits_size and frame_mbs * fps <= max_mbps and bitrate <= max_br * 1000:
            return name
    log.warning(
        "%dx%d@%d at %d bit/s exceeds every H.264 level; using 5.2", width, height, fps, bitrate
    )
    return _LEVELS[-1][0]


def x264_params(*, level: str, keyframe_interval: int, bitrate: int) -> str:
    """The ``x264-params`` string: why each setting matters is in the comments."""
    kbps = max(1, bitrate // 1000)
    params = {
        "level": level,
        "keyint": keyframe_interval,  # IDR every N frames ...
        "scenecut": 0,  # ... and only then (or on request)
        "bframes": 0,  # decode order == presentation order, no reorder delay
        "repeat-headers": 1,  # SPS/PPS in front of every IDR: viewers join there
        "annexb": 1,  # start codes, what the RTP packetizer expects
        "aud": 0,
        "slices": 1,  # one slice per picture (threads=1, see open_encoder)
        "vbv-maxrate": kbps,  # keep the rate near the target, not just on average
        "vbv-bufsize": max(1, int(kbps * _VBV_SECONDS)),
    }
    return ":".join(f"{key}={value}" for key, value in params.items())


def open_encoder(
    *, width: int, height: int, fps: int, bitrate: int, keyframe_interval: int
) -> av.VideoCodecContext:
    """A libx264 encoder: constrained baseline, ultrafast, zerolatency, Annex-B.

    ``thread_count = 1`` because zerolatency's sliced threads would cut every
    picture into one slice per thread; one slice per frame is what the Pi's
    hardware encoder produces too.  Timestamps are in microseconds so packet
    pts come back as the frame pts we set.
    """
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = TIME_BASE
    ctx.framerate = Fraction(fps, 1)
    ctx.bit_rate = bitrate
    ctx.thread_count = 1
    ctx.options = {
        "profile": "baseline",
        "preset": "ultrafast",
        "tune": "zerolatency",
        "forced-idr": "1",  # pict_type I from request_keyframe() -> an IDR
        "x264-params": x264_params(
            level=h264_level(width, height, fps, bitrate),
            keyframe_interval=keyframe_interval,
            bitrate=bitrate,
        ),
    }
    ctx.open()
    return ctx


# --------------------------------------------------------------------------
# Picture
# --------------------------------------------------------------------------

#: A 5x7 bitmap font (no font files on a Pi image we control). Rows top to
#: bottom, "#" = ink. Lower case is drawn as upper case; unknown characters as "?".
_FONT: dict[str, tuple[str, ...]] = {
    " ": (".....",) * 7,
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "_": (".....", ".....", ".....", ".....", ".....", ".....", "#####"),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    "?": (".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."),
}
_GLYPH_W, _GLYPH_H, _ADVANCE = 5, 7, 6

# BT.601 limited-range YUV.
_BLACK, _WHITE, _DARK = 16, 235, 40
_NEUTRAL = 128
#: 75 % colour bars: white, yellow, cyan, green, magenta, red, blue (Y, U, V).
_BARS = (
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
)
#: What ``[camera] pattern`` may name: flat bars, or bars with sensor-like grain.
PATTERNS = ("bars", "noise", "doorway")
#: How long a scripted visitor takes to walk through the picture (seconds).
VISITOR_WALK = 3.0
#: Grain amplitude (luma steps either way) and how many grain pictures cycle:
#: ±16 already makes libx264 spend a 2 Mbit/s budget at 720p and 1080p.
_GRAIN = 16
_GRAIN_PICTURES = 4


def glyph_mask(char: str, scale: int) -> np.ndarray:
    """A ``(7*scale, 5*scale)`` boolean ink mask of one character."""
    rows = _FONT.get(char.upper(), _FONT["?"])
    mask = np.array([[cell == "#" for cell in row] for row in rows], dtype=bool)
    return mask.repeat(scale, axis=0).repeat(scale, axis=1)


def text_mask(text: str, scale: int) -> np.ndarray:
    """A boolean ink mask of a line of text (6*scale px per character)."""
    mask = np.zeros((_GLYPH_H * scale, max(1, len(text)) * _ADVANCE * scale), dtype=bool)
    for i, char in enumerate(text):
        x = i * _ADVANCE * scale
        mask[:, x : x + _GLYPH_W * scale] = glyph_mask(char, scale)
    return mask


def _triangle(distance: float, span: int) -> int:
    """Position bouncing between 0 and ``span`` after travelling ``distance`` px (even)."""
    if span <= 0:
        return 0
    phase = distance % (2 * span)
    return int(span - abs(phase - span)) & ~1


def clock_text(t_us: int) -> str:
    """``HH:MM:SS.mmm`` local time: what a person reads off the screen."""
    seconds, micros = divmod(t_us, 1_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{micros // 1000:03d}"


@dataclass(frozen=True, slots=True)
class _Geometry:
    """Where everything goes in a picture; computed once per size."""

    scale: int  # font scale
    pad: int
    band_top: int  # first row of the timecode band (== height if no timecode)
    strip_top: int  # first row of the clock strip
    box: int  # bouncing box size (even)


def _geometry(width: int, height: int) -> _Geometry:
    scale = max(1, height // 120)
    pad = 2 * scale
    band = timecode.band_height(width, height)
    strip_top = (height - band - (_GLYPH_H * scale + 2 * pad)) & ~1
    box = max(8, (min(width, strip_top) // 5) & ~1)
    return _Geometry(scale, pad, height - band, strip_top, box)


class PatternRenderer:
    """Renders YUV420p pictures into one preallocated buffer, touching only what moves.

    The static parts (colour bars, name, clock strip, timecode band) are drawn
    once into a background copy; each picture then restores the box's old
    place from the background, draws the box at its new place, rewrites the
    clock characters that changed and the timecode cells.  A 1280x720 picture
    costs well under a millisecond that way.

    ``pattern="doorway"`` is the bars without the bouncing box: a still
    scene in which only a scripted visitor (``walk_visitor``), a
    person-sized dark block, appears and walks across, so motion detection
    can be tested deterministically.

    ``pattern="noise"`` adds strong, changing grain to the bars (as a real
    sensor in dim light does): flat bars compress to a quarter of a 2 Mbit/s
    target, grain makes the encoder spend all of it, so packetizing and
    sending cost what they would with a real camera.  The grain comes from a
    few pictures made once, copied in turn (a copy per picture, no random
    numbers per picture).
    """

    def __init__(self, width: int, height: int, name: str, pattern: str = "bars") -> None:
        if width % 2 or height % 2 or width < 64 or height < 64:
            raise ValueError(f"test pattern needs an even size >= 64x64, not {width}x{height}")
        if pattern not in PATTERNS:
            raise ValueError(f"unknown test pattern {pattern!r}; allowed: {', '.join(PATTERNS)}")
        self.width, self.height = width, height
        self._geo = _geometry(width, height)
        self._timecode = timecode.fits(width, height)
        if not self._timecode:
            log.info("%dx%d is too small for the timecode barcode; drawing none", width, height)
        self.buffer = np.empty((height * 3 // 2, width), dtype=np.uint8)  # what PyAV takes
        self.y, self.u, self.v = self._planes(self.buffer)
        self._draw_background(name)
        self._bg = self.buffer.copy()
        self._bg_y, self._bg_u, self._bg_v = self._planes(self._bg)
        self._glyphs = {
            c: np.where(glyph_mask(c, self._geo.scale), _WHITE, _DARK).astype(np.uint8)
            for c in "0123456789:."
        }
        self._clock = ""
        self._box_at: tuple[int, int] | None = None
        self._grain = self._make_grain() if pattern == "noise" else []
        self._pictures = 0
        self._still = pattern == "doorway"
        self._visitor_wanted = threading.Event()
        self._visitor_from: float | None = None
        self._visitor_at: tuple[int, int, int, int] | None = None

    def walk_visitor(self) -> None:
        """A visitor walks through the scene from the next picture on (any thread)."""
        self._visitor_wanted.set()

    def scene_luma(self, width: int) -> np.ndarray:
        """A small copy of the scene's luma (above the clock strip), about ``width`` wide.

        What the Pi's ``lores`` stream gives motion detection: the clock strip
        and barcode band are peercam's own overlay, not the scene.
        """
        step = max(1, self.width // width)
        return self.y[: self._geo.strip_top : step, ::step].copy()

    def _move_visitor(self, elapsed: float) -> None:
        geo = self._geo
        if self._visitor_wanted.is_set():
            self._visitor_wanted.clear()
            self._visitor_from = elapsed
        if self._visitor_at is not None:
            x, y, w, h = self._visitor_at
            self.y[y : y + h, x : x + w] = self._bg_y[y : y + h, x : x + w]
            self._visitor_at = None
        if self._visitor_from is None:
            return
        progress = (elapsed - self._visitor_from) / VISITOR_WALK
        if progress >= 1.0:
            self._visitor_from = None  # gone
            return
        w = max(4, (self.width // 8) & ~1)
        h = max(4, (geo.strip_top * 3 // 5) & ~1)
        x = int(self.width * 0.1 + progress * (self.width * 0.8 - w)) & ~1
        y = (geo.strip_top - h - geo.pad) & ~1
        self.y[y : y + h, x : x + w] = _DARK
        self._visitor_at = (x, y, w, h)

    def _make_grain(self) -> list[np.ndarray]:
        """Noisy copies of the bars (luma only), one per picture of the grain cycle."""
        bars = self._bg_y[: self._geo.strip_top].astype(np.int16)
        rng = np.random.default_rng(0x9E3779B9)
        return [
            np.clip(bars + rng.integers(-_GRAIN, _GRAIN + 1, bars.shape, np.int16), 0, 255).astype(
                np.uint8
            )
            for _ in range(_GRAIN_PICTURES)
        ]

    def _planes(self, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, U, V views into a packed yuv420p buffer (the layout ``from_ndarray`` expects)."""
        w, h = self.width, self.height
        flat = buf.reshape(-1)
        y = flat[: w * h].reshape(h, w)
        u = flat[w * h : w * h * 5 // 4].reshape(h // 2, w // 2)
        v = flat[w * h * 5 // 4 :].reshape(h // 2, w // 2)
        return y, u, v

    def _draw_background(self, name: str) -> None:
        geo, w = self._geo, self.width
        edges = [(i * w // len(_BARS)) & ~1 for i in range(len(_BARS) + 1)]
        for (yv, uv, vv), x0, x1 in zip(_BARS, edges, edges[1:], strict=False):
            self.y[: geo.strip_top, x0:x1] = yv
            self.u[: geo.strip_top // 2, x0 // 2 : x1 // 2] = uv
            self.v[: geo.strip_top // 2, x0 // 2 : x1 // 2] = vv
        self.y[geo.strip_top :] = _DARK
        self.y[geo.band_top :] = _BLACK
        self.u[geo.strip_top // 2 :] = _NEUTRAL
        self.v[geo.strip_top // 2 :] = _NEUTRAL
        self._draw_label(name)

    def _draw_label(self, name: str) -> None:
        """The device name, white on a black plate in the top-left corner."""
        geo = self._geo
        max_chars = max(1, (self.width - 4 * geo.pad) // (_ADVANCE * geo.scale))
        mask = text_mask(name[:max_chars], geo.scale)
        x0 = y0 = 2 * geo.pad  # even
        plate_h = (mask.shape[0] + 2 * geo.pad + 1) & ~1
        plate_w = (mask.shape[1] + 2 * geo.pad + 1) & ~1
        top, left = y0 - geo.pad, x0 - geo.pad  # even
        self.y[top : top + plate_h, left : left + plate_w] = _BLACK
        cy, cx = top // 2, left // 2
        self.u[cy : cy + plate_h // 2, cx : cx + plate_w // 2] = _NEUTRAL
        self.v[cy : cy + plate_h // 2, cx : cx + plate_w // 2] = _NEUTRAL
        region = self.y[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
        region[mask[: region.shape[0], : region.shape[1]]] = _WHITE

    def _move_box(self, elapsed: float) -> None:
        geo = self._geo
        size = geo.box
        x = _triangle(elapsed * self.width * 0.4, self.width - size)
        y = _triangle(elapsed * self.height * 0.3, geo.strip_top - size)
        if self._box_at is not None:
            ox, oy = self._box_at
            self.y[oy : oy + size, ox : ox + size] = self._bg_y[oy : oy + size, ox : ox + size]
            cy, cx, cs = oy // 2, ox // 2, size // 2
            self.u[cy : cy + cs, cx : cx + cs] = self._bg_u[cy : cy + cs, cx : cx + cs]
            self.v[cy : cy + cs, cx : cx + cs] = self._bg_v[cy : cy + cs, cx : cx + cs]
        border = max(2, size // 8)
        self.y[y : y + size, x : x + size] = _BLACK
        self.y[y + border : y + size - border, x + border : x + size - border] = _WHITE
        self.u[y // 2 : (y + size) // 2, x // 2 : (x + size) // 2] = _NEUTRAL
        self.v[y // 2 : (y + size) // 2, x // 2 : (x + size) // 2] = _NEUTRAL
        self._box_at = (x, y)

    def _draw_clock(self, t_us: int) -> None:
        geo = self._geo
        text = clock_text(t_us)
        top = geo.strip_top + geo.pad
        advance = _ADVANCE * geo.scale
        for i, char in enumerate(text):
            if i < len(self._clock) and self._clock[i] == char:
                continue
            x = 2 * geo.pad + i * advance
            glyph = self._glyphs[char]
            region = self.y[top : top + glyph.shape[0], x : x + glyph.shape[1]]
            region[...] = glyph[: region.shape[0], : region.shape[1]]
        self._clock = text

    def render(self, elapsed: float, t_us: int) -> np.ndarray:
        """Draw the picture for ``elapsed`` seconds of pattern time, captured at ``t_us``.

        ``t_us`` is wall-clock microseconds (``time.time()``): shown as a clock
        and stamped as a barcode.  Returns the packed yuv420p buffer (reused!).
        """
        if self._grain:
            self.y[: self._geo.strip_top] = self._grain[self._pictures % len(self._grain)]
            self._box_at = None  # the old box is gone with the bars it was drawn on
        self._pictures += 1
        if not self._still:
            self._move_box(elapsed)
        self._move_visitor(elapsed)
        self._draw_clock(t_us)
        if self._timecode:
            timecode.stamp(self.y, t_us)
        return self.buffer


class Downscaler:
    """Scales a packed yuv420p picture to a smaller one (nearest neighbour, index tables).

    What an ISP's second output does for picamera2's ``lores`` stream: the
    same picture, smaller.  About a millisecond for 1280x720 to 640x360.
    """

    def __init__(self, width: int, height: int, out_width: int, out_height: int) -> None:
        self.width, self.height = width, height
        self.out_width, self.out_height = out_width, out_height
        self._rows = np.arange(out_height) * height // out_height
        self._cols = np.arange(out_width) * width // out_width
        self._crows = np.arange(out_height // 2) * (height // 2) // (out_height // 2)
        self._ccols = np.arange(out_width // 2) * (width // 2) // (out_width // 2)
        self.buffer = np.empty((out_height * 3 // 2, out_width), dtype=np.uint8)

    def scale(self, buffer: np.ndarray) -> np.ndarray:
        w, h, ow, oh = self.width, self.height, self.out_width, self.out_height
        flat, out = buffer.reshape(-1), self.buffer.reshape(-1)
        y = flat[: w * h].reshape(h, w)
        out[: ow * oh].reshape(oh, ow)[:] = y[self._rows[:, None], self._cols]
        for i in range(2):
            start = w * h + i * (w * h // 4)
            plane = flat[start : start + w * h // 4].reshape(h // 2, w // 2)
            ostart = ow * oh + i * (ow * oh // 4)
            out[ostart : ostart + ow * oh // 4].reshape(oh // 2, ow // 2)[:] = plane[
                self._crows[:, None], self._ccols
            ]
        return self.buffer


class _Lores:
    """The attached substream: where its frames go, and its own IDR requests."""

    def __init__(self, deliver: Callable[[EncodedFrame], None], on_fault: FaultSink) -> None:
        self.deliver = deliver
        self.on_fault = on_fault
        self.keyframe_wanted = threading.Event()


def _wrap(buffer: np.ndarray) -> av.VideoFrame:
    """A VideoFrame over the renderer's buffer, without copying it when PyAV allows.

    Zero-copy is safe because libx264 copies the picture into its own frame
    inside ``encode()`` (we reuse the buffer only after that returns); it
    saves about 0.9 ms per 1280x720 frame here.  Older PyAV without yuv420p
    in ``from_numpy_buffer`` gets a copy.
    """
    try:
        return av.VideoFrame.from_numpy_buffer(buffer, format="yuv420p")
    except ValueError:
        return av.VideoFrame.from_ndarray(buffer, format="yuv420p")


# --------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------


class TestPatternSource(ThreadedSource):
    """An ``EncodedSource`` that renders and encodes a test pattern on one thread.

    The thread imitates picamera2's encoder thread: it paces itself with a
    monotonic clock, skips frame slots when it falls behind (instead of
    drifting), and hands every access unit to the loop with
    ``call_soon_threadsafe``.  Deliveries carry a run generation so nothing
    reaches the sink after ``stop()`` has returned.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        *,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        keyframe_interval: int,
        name: str = "peercam",
        pattern: str = "bars",
        substream: SubstreamSpec | None = None,
    ) -> None:
        if fps <= 0 or keyframe_interval <= 0 or bitrate <= 0:
            raise ValueError("fps, bitrate and keyframe_interval must be positive")
        super().__init__()
        self.info = VideoInfo(codec="H264", width=width, height=height, fps=fps)
        self._bitrate = bitrate
        self._keyframe_interval = keyframe_interval
        self._name = name
        self._renderer = PatternRenderer(width, height, name, pattern)
        self._keyframe_wanted = threading.Event()
        self._motion: tuple[Callable[[np.ndarray], None], int, int] | None = None
        #: Frame slots skipped because the thread fell behind (for status pages).
        self.frames_skipped = 0
        self.substream = substream
        self._lores: _Lores | None = None  # read by the capture thread at each picture
        self.lores_encoder_kind = "software"

    # ---- the substream (sources.substream.LoresTap) --------------------------

    async def attach_lores(
        self, deliver: Callable[[EncodedFrame], None], on_fault: FaultSink
    ) -> None:
        if self.substream is None:
            raise RuntimeError("this test pattern was made without a substream")
        self._lores = _Lores(deliver, on_fault)

    async def detach_lores(self) -> None:
        self._lores = None

    def request_lores_keyframe(self) -> None:
        lores = self._lores
        if lores is not None:
            lores.keyframe_wanted.set()

    def _deliver_lores(self, generation: int, lores: _Lores, frame: EncodedFrame) -> None:
        if generation == self._generation and lores is self._lores:
            lores.deliver(frame)

    @property
    def frame_interval_us(self) -> int:
        return round(1_000_000 / self.info.fps)

    @property
    def pts_step(self) -> int:
        return self.frame_interval_us

    @property
    def thread_name(self) -> str:
        return "peercam-test-pattern"

    async def start(self, sink: FrameSink, on_fault: FaultSink) -> None:
        """Open the encoder (errors raise here) and start the capture thread."""
        if self.running:
            log.debug("test pattern already running")
            return
        await self.stop()  # reaps a thread that ended on its own (its loop closed); else a no-op
        encoder = await in_thread(self._open_encoder, name="peercam-pattern-open")
        self._launch(sink, on_fault, self._capture, encoder)
        log.info(
            "test pattern %dx%d@%d, %d bit/s, IDR every %d frames",
            self.info.width,
            self.info.height,
            self.info.fps,
            self._bitrate,
            self._keyframe_interval,
        )

    def request_keyframe(self) -> None:
        """Ask for an IDR as the next encoded frame; repeated requests coalesce."""
        self._keyframe_wanted.set()

    def set_motion_sink(
        self, sink: Callable[[np.ndarray], None] | None, *, fps: int = 5, width: int = 160
    ) -> None:
        """Hand ``sink`` (on the loop) a small luma picture of the scene ``fps`` times a second."""
        self._motion = None if sink is None else (sink, max(1, round(self.info.fps / fps)), width)

    def walk_visitor(self) -> None:
        """Script a visitor walking through the picture (motion tests, demos)."""
        self._renderer.walk_visitor()

    # ---- the capture thread -------------------------------------------------

    def _open_encoder(self) -> av.VideoCodecContext:
        return open_encoder(
            width=self.info.width,
            height=self.info.height,
            fps=self.info.fps,
            bitrate=self._bitrate,
            keyframe_interval=self._keyframe_interval,
        )

    def _capture(self, run: Run, encoder: av.VideoCodecContext | None) -> None:
        """Thread body: pace, render, encode, deliver; faults are reported, not fatal."""
        period = 1.0 / self.info.fps
        t0 = time.monotonic()
        slot = 0
        faulted = False
        lores_encoder: av.VideoCodecContext | None = None
        lores_for: _Lores | None = None
        scaler: Downscaler | None = None
        while (slot := self._next_slot(run, t0, period, slot)) is not None:
            stage = "encoder open"
            try:
                if encoder is None:
                    encoder = self._open_encoder()
                stage = "render"
                frame = self._render(run, slot)
                motion = self._motion
                if motion is not None and slot % motion[1] == 0:
                    stage = "motion picture"
                    self._post(run, self._motion_picture, self._renderer.scene_luma(motion[2]))
                stage = "encode"
                self._encode(run, encoder, frame)
                lores = self._lores
                if lores is not lores_for:  # attached, detached or attached anew
                    lores_encoder, lores_for = None, lores
                if lores is not None and self.substream is not None:
                    stage = "substream encode"
                    spec = self.substream
                    if lores_encoder is None:
                        lores_encoder = open_encoder(
                            width=spec.width,
                            height=spec.height,
                            fps=self.info.fps,
                            bitrate=spec.bitrate,
                            keyframe_interval=spec.keyframe_interval,
                        )
                        scaler = scaler or Downscaler(
                            self.info.width, self.info.height, spec.width, spec.height
                        )
                    assert scaler is not None
                    small = _wrap(scaler.scale(self._renderer.buffer))
                    small.pts = frame.pts
                    if lores.keyframe_wanted.is_set():
                        lores.keyframe_wanted.clear()
                        small.pict_type = PictureType.I
                    for packet in lores_encoder.encode(small):
                        data = bytes(packet)
                        pts = small.pts if packet.pts is None else int(packet.pts)
                        self._post(
                            run,
                            self._deliver_lores,
                            lores,
                            EncodedFrame(data, pts, h264.is_idr(data)),
                        )
            except Exception as exc:
                message = (
                    f"test pattern {self.info.width}x{self.info.height}: {stage} failed at "
                    f"frame slot {slot}: {type(exc).__name__}: {exc}"
                )
                if faulted:
                    log.debug("%s", message)  # already reported; don't flood the log
                else:
                    log.exception("%s", message)
                    self._post(run, self._report, message)
                faulted = True
                encoder = None  # start over with a fresh encoder (and so an IDR)
                lores_encoder = None
            else:
                if faulted:
                    log.info("test pattern recovered at frame slot %d", slot)
                    self._post(run, self._report, None)
                    faulted = False
            slot += 1
        del encoder  # frees the codec; pending output is deliberately not flushed

    def _motion_picture(self, generation: int, picture: np.ndarray) -> None:
        motion = self._motion
        if motion is not None and generation == self._generation:
            motion[0](picture)

    def _next_slot(self, run: Run, t0: float, period: float, slot: int) -> int | None:
        """Sleep until frame slot ``slot`` is due; None once stopped.

        A thread that is a whole period or more late skips the missed slots
        (their pts are simply not used) instead of drifting behind the clock.
        """
        delay = t0 + slot * period - time.monotonic()
        if delay > 0:
            return None if run.stop.wait(delay) else slot
        if run.stop.is_set():
            return None
        missed = int(-delay / period)
        if missed:
            self.frames_skipped += missed
            log.debug("test pattern fell behind: skipping %d frame slot(s)", missed)
        return slot + missed

    def _render(self, run: Run, slot: int) -> av.VideoFrame:
        """The picture for a slot, stamped with its capture time, pts in microseconds."""
        t_us = time.time_ns() // 1000
        frame = _wrap(self._renderer.render(slot / self.info.fps, t_us))
        frame.pts = run.pts_base + round(slot * 1_000_000 / self.info.fps)
        if self._keyframe_wanted.is_set():
            self._keyframe_wanted.clear()
            frame.pict_type = PictureType.I  # with forced-idr=1: an IDR, SPS/PPS in front
        return frame

    def _encode(self, run: Run, encoder: av.VideoCodecContext, frame: av.VideoFrame) -> None:
        """Encode one picture and hand each access unit to the loop.

        ``keyframe`` comes from the NAL units, not from libx264's flag: what
        matters to a joining viewer is an IDR slice, nothing else.
        """
        for packet in encoder.encode(frame):
            data = bytes(packet)
            pts = frame.pts if packet.pts is None else int(packet.pts)
            self._post(run, self._deliver, EncodedFrame(data, pts, h264.is_idr(data)))
