"""The recording parts on their own: pre-roll ring, motion detector, clip store caps, MP4 remux."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from peercam.config import MotionConfig, MotionZone, config_from_dict
from peercam.media import EncodedFrame
from peercam.motion import MotionDetector
from peercam.recording.mp4 import write_mp4
from peercam.recording.ring import PreRoll, Stamped
from peercam.recording.store import ClipEntry, ClipStore, StorageFault, new_clip_id
from peercam.sources import h264
from peercam.sources.lores_motion import lores_size, shrink_luma
from peercam.sources.test_pattern import PatternRenderer, _wrap, open_encoder

# --- ring ---------------------------------------------------------------------------------


def video(i: int, *, key: bool, size: int = 1000) -> EncodedFrame:
    return EncodedFrame(bytes(size), i * 100_000, key)


def test_ring_starts_at_the_idr_before_the_preroll() -> None:
    ring = PreRoll(seconds=1.0, max_bytes=10**9)
    ring.add_video(video(0, key=False), 0.0)
    assert not ring.video, "a ring never starts mid-GOP"
    for i in range(60):  # 10 fps, IDR every 5 frames (0.5 s)
        ring.add_video(video(i, key=i % 5 == 0), i / 10)
        ring.add_audio(EncodedFrame(b"a", i), i / 10 + 0.01)
    held = [s.frame.pts // 100_000 for s in ring.video]
    # now = 5.9: cutoff 4.9; the IDR at or before it is frame 45 (4.5 s)
    assert held[0] == 45 and held[-1] == 59 and ring.video[0].frame.keyframe
    assert all(a.at >= ring.video[0].at for a in ring.audio)
    assert ring.bytes == sum(len(s.frame.data) for s in (*ring.video, *ring.audio))


def test_ring_byte_cap_drops_whole_gops() -> None:
    ring = PreRoll(seconds=100.0, max_bytes=12_000)
    for i in range(40):
        ring.add_video(video(i, key=i % 5 == 0), i / 10)
        assert ring.bytes <= 12_000
        assert not ring.video or ring.video[0].frame.keyframe
    assert len(ring.video) >= 5
    # one GOP bigger than the cap: nothing usable is kept
    ring.add_video(EncodedFrame(bytes(20_000), 10**7, True), 5.0)
    assert ring.bytes <= 12_000


# --- motion -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scene(block_x: int | None) -> np.ndarray:
    picture = np.full((90, 160), 180, dtype=np.uint8)
    if block_x is not None:
        picture[20:80, block_x : block_x + 20] = 5  # dark: 180-5 wraps in uint8
    return picture


def run_detector(cfg: MotionConfig, pictures: list[np.ndarray], fps: float = 5.0) -> list[str]:
    clock = Clock()
    said: list[str] = []
    detector = MotionDetector(
        cfg,
        on_start=lambda: said.append("start"),
        on_end=lambda s: said.append(f"end {s:.1f}"),
        clock=clock,
    )
    for picture in pictures:
        detector.feed(picture)
        clock.now += 1 / fps
    return said


def test_one_visit_is_one_event_and_a_second_within_min_interval_is_not() -> None:
    cfg = MotionConfig(enabled=True, quiet=1.0, min_interval=20)
    still = [scene(None)] * 10
    walk = [scene(10 + 8 * i) for i in range(15)]
    said = run_detector(cfg, still + walk + still + walk + still)
    assert said == ["start", "end 4.0"], said


def test_a_gap_in_the_pictures_is_a_new_baseline_not_motion() -> None:
    """After a camera restart the scene may differ (exposure, a door left open)."""
    clock = Clock()
    said: list[str] = []
    detector = MotionDetector(
        MotionConfig(enabled=True), on_start=lambda: said.append("start"), on_end=print, clock=clock
    )
    detector.feed(scene(None))
    clock.now += 10  # the camera was off for 10 s
    detector.feed(scene(40))
    clock.now += 0.2
    detector.feed(scene(40))
    assert said == []


def test_still_scene_and_motion_outside_zones_say_nothing() -> None:
    assert run_detector(MotionConfig(enabled=True), [scene(None)] * 30) == []
    # the block walks only in the right half; only the left half is watched
    left = MotionZone(x=0.0, y=0.0, w=0.4, h=1.0)
    walk = [scene(None)] + [scene(90 + 3 * i) for i in range(15)]
    assert run_detector(MotionConfig(enabled=True, zones=[left]), walk) == []
    right = MotionZone(x=0.5, y=0.0, w=0.5, h=1.0)
    assert run_detector(MotionConfig(enabled=True, zones=[right]), walk)[:1] == ["start"]


def test_zone_outside_the_picture_is_refused() -> None:
    with pytest.raises(Exception, match="outside the picture"):
        config_from_dict({"motion": {"zones": [{"x": 0.8, "w": 0.5}]}})
    with pytest.raises(Exception, match="longer than max_clip"):
        config_from_dict({"recording": {"preroll": 20, "postroll": 50, "max_clip": 60}})


def test_doorway_scene_is_still_until_a_visitor_walks() -> None:
    renderer = PatternRenderer(320, 240, "door", "doorway")
    renderer.render(0.0, 0)
    first = renderer.scene_luma(160)
    renderer.render(0.5, 500_000)
    assert np.array_equal(first, renderer.scene_luma(160)), "clock and barcode are not scene"
    renderer.walk_visitor()
    renderer.render(1.0, 1_000_000)
    seen = renderer.scene_luma(160)
    assert np.count_nonzero(seen != first) > seen.size * 0.03, "a person-sized block"
    renderer.render(1.5, 1_500_000)
    assert not np.array_equal(seen, renderer.scene_luma(160)), "and it moves"
    renderer.render(10.0, 10_000_000)
    assert np.array_equal(first, renderer.scene_luma(160)), "then it is gone"


# --- store --------------------------------------------------------------------------------


def make_entry(store: ClipStore, at: float, size: int) -> ClipEntry:
    entry = ClipEntry(new_clip_id(at), at, at, "motion", 5.0, size)
    tmp = store.tmp_path(entry.id, ".mp4")
    tmp.write_bytes(bytes(size))
    store.commit(entry, tmp, b"\xff\xd8jpeg")
    return entry


def test_caps_delete_the_oldest_first_and_the_index_survives(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, max_total_bytes=25_000, max_age=3600, min_free_bytes=0)
    store.open()
    now = time.time()
    entries = [make_entry(store, now - 100 + i, 10_000) for i in range(4)]
    kept = [e.id for e in store.entries]
    assert kept == [entries[3].id, entries[2].id], "newest first, total under the cap"
    assert store.total_bytes <= 25_000
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == sorted(f"{i}.mp4" for i in kept)
    assert not (tmp_path / f"{entries[0].id}.jpg").exists()
    # age cap
    store.entries[-1].at = now - 7200
    assert [e.id for e in store.apply_caps()] == [entries[2].id]
    # reopened from disk; a stray temporary file of a crashed write is removed
    (tmp_path / ".x.mp4.tmp").write_bytes(b"half")
    again = ClipStore(tmp_path, max_total_bytes=25_000, max_age=3600, min_free_bytes=0)
    again.open()
    assert [e.id for e in again.entries] == [entries[3].id]
    assert not (tmp_path / ".x.mp4.tmp").exists()


@pytest.mark.parametrize("clip_id", ["../clips", "/etc/passwd", "x" * 500, "", "*"])
def test_unknown_or_tricky_ids_find_nothing(tmp_path: Path, clip_id: str) -> None:
    store = ClipStore(tmp_path, max_total_bytes=10**9, max_age=0, min_free_bytes=0)
    store.open()
    make_entry(store, time.time(), 100)
    assert store.find(clip_id) is None and store.delete(clip_id) is None
    assert len(store.entries) == 1


def test_index_with_tricky_ids_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "clips.json").write_text(
        json.dumps({"clips": [{"id": "../x", "at": 1, "start": 1, "reason": "ring",
                               "duration": 1, "size": 1}]})
    )  # fmt: skip
    store = ClipStore(tmp_path, max_total_bytes=10**9, max_age=0, min_free_bytes=0)
    store.open()
    assert store.entries == []


def test_permission_denied_is_named(tmp_path: Path) -> None:
    """Checked as an unprivileged user (root writes anywhere)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    folder.chmod(0o555)
    tmp_path.chmod(0o755)
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from peercam.recording.store import ClipStore, StorageFault\n"
        "if os.geteuid() == 0: os.setgid(65534); os.setuid(65534)\n"
        f"s = ClipStore(Path({str(folder)!r}), max_total_bytes=1, max_age=0, min_free_bytes=0)\n"
        "try:\n    s.check()\nexcept StorageFault as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "permission denied" in out.stdout, out.stdout + out.stderr


def test_full_disk_is_named_before_writing(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    store = ClipStore(tmp_path, max_total_bytes=10**12, max_age=0, min_free_bytes=free + 2**30)
    with pytest.raises(StorageFault, match="disk full"):
        store.check()


# --- MP4 ----------------------------------------------------------------------------------


def test_remux_keeps_every_access_unit_and_starts_on_the_idr(tmp_path: Path) -> None:
    encoder = open_encoder(width=320, height=240, fps=30, bitrate=500_000, keyframe_interval=30)
    renderer = PatternRenderer(320, 240, "clip")
    frames: list[Stamped] = []
    for i in range(75):
        picture = _wrap(renderer.render(i / 30, 0))
        picture.pts = 7_000_000 + i * 33_333
        for packet in encoder.encode(picture):
            data = bytes(packet)
            frames.append(Stamped(EncodedFrame(data, int(packet.pts), h264.is_idr(data)), i / 30))
    start = next(i for i, s in enumerate(frames) if s.frame.keyframe)
    path = tmp_path / "clip.mp4"
    duration = write_mp4(path, frames[start:], fps=30, width=320, height=240)
    assert abs(duration - 75 / 30) < 0.01
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        assert [bytes(p) != b"" for p in packets].count(True) == 75
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 75 and decoded[0].key_frame
    with pytest.raises(ValueError, match="IDR"):
        write_mp4(tmp_path / "bad.mp4", frames[1:], fps=30, width=320, height=240)


# --- protocol -----------------------------------------------------------------------------


def parse(**fields: object) -> object:
    from peercam.protocol import parse_viewer_message

    return parse_viewer_message(json.dumps({"v": 1, **fields}).encode())


def test_clip_messages_parse_and_tricks_are_bad_requests() -> None:
    from peercam.protocol import DeleteClip, Offer, ProtocolError, Record

    sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    offer = parse(type="offer", session="s" * 8, sdp=sdp, clip="20261204T021930Z-3f9a1c")
    assert isinstance(offer, Offer) and offer.clip == "20261204T021930Z-3f9a1c"
    assert parse(type="record") == Record()
    assert parse(type="delete-clip", clip="20261204T021930Z-3f9a1c") == DeleteClip(
        "20261204T021930Z-3f9a1c"
    )
    for bad in ("../../etc/passwd", "a/b/c/d/e", "", "x" * 65, 7, None):
        with pytest.raises(ProtocolError) as caught:
            parse(type="delete-clip", clip=bad)
        assert caught.value.code == "bad-request", bad
    with pytest.raises(ProtocolError, match="not both"):
        parse(type="offer", session="s" * 8, sdp=sdp, clip="c" * 8, call="k" * 8)
    for device_only in ("clips", "motion", "recorded"):
        with pytest.raises(ProtocolError) as caught:
            parse(type=device_only)
        assert caught.value.code == "unsupported"


def test_avcc_samples_become_annexb_with_parameter_sets() -> None:
    from peercam.recording.playback import parse_avcc, to_annexb

    sps, pps = b"\x67\x42\xc0\x1f", b"\x68\xce\x3c\x80"
    avcc = bytes([1, 0x42, 0xC0, 0x1F, 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
    avcc += bytes([1]) + len(pps).to_bytes(2, "big") + pps
    size, sets = parse_avcc(avcc)
    assert size == 4 and sets == [sps, pps]
    idr = b"\x65\x88\x84"
    sample = len(idr).to_bytes(4, "big") + idr
    start = b"\x00\x00\x00\x01"
    assert to_annexb(sample, 4, sets, key=True) == start + sps + start + pps + start + idr
    assert to_annexb(sample, 4, sets, key=False) == start + idr


# --- playback player ------------------------------------------------------------------------


class FakeChannel:
    """What ClipPlayer uses of aiortc's RTCDataChannel."""

    readyState = "open"
    bufferedAmount = 0

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.handlers: dict[str, Any] = {}

    def on(self, event: str) -> Any:
        def register(fn: Any) -> Any:
            self.handlers[event] = fn
            return fn

        return register

    def send(self, data: str | bytes) -> None:
        self.sent.append(data)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self.sent if isinstance(m, str)]


def make_clip(path: Path, seconds: float = 3.0, keyint: int = 30) -> None:
    encoder = open_encoder(width=160, height=120, fps=30, bitrate=200_000, keyframe_interval=keyint)
    renderer = PatternRenderer(160, 120, "c")
    frames: list[Stamped] = []
    for i in range(int(seconds * 30)):
        picture = _wrap(renderer.render(i / 30, 0))
        picture.pts = i * 33_333
        for packet in encoder.encode(picture):
            data = bytes(packet)
            frames.append(Stamped(EncodedFrame(data, int(packet.pts), h264.is_idr(data)), i / 30))
    write_mp4(path, frames, fps=30, width=160, height=120)


async def test_player_seeks_to_an_idr_answers_commands_and_drops_a_flood(tmp_path: Path) -> None:
    from peercam.recording.playback import ClipPlayer, load_clip

    path = tmp_path / "c.mp4"
    make_clip(path)
    video, audio, duration = load_clip(path)
    assert len(video) == 90 and video[0].key and duration == pytest.approx(3.0, abs=0.01)
    assert all(s.data.startswith(b"\x00\x00\x00\x01") for s in video)
    player = ClipPlayer("c" * 8, path, video, audio, duration)
    channel = FakeChannel()
    player.attach(channel)
    assert channel.events()[0]["event"] == "state"
    sub = player.video_feed.subscribe()
    first = await sub.get()
    assert first.keyframe
    player._command(json.dumps({"cmd": "seek", "to": 1.7}))  # IDRs at 0, 1, 2 s
    assert channel.events()[-1]["position"] == pytest.approx(1.0, abs=0.01)
    after_seek = await sub.get()
    assert after_seek.keyframe and after_seek.pts > first.pts, "timestamps only go forward"
    player._command(json.dumps({"cmd": "fly"}))
    player._command("{")
    player._command(b"\x00")
    errors = [e for e in channel.events() if e["event"] == "error"]
    assert len(errors) == 3 and "unknown command" in errors[0]["message"]
    before = len(channel.sent)
    for _ in range(200):
        player._command(json.dumps({"cmd": "pause"}))
    assert len(channel.sent) - before <= 25, "a flood is cut at about 20 commands a second"
    player.close()
    with pytest.raises(Exception, match="clip"):
        await sub.get()


# --- notifications of motion ---------------------------------------------------------------


def test_motion_notifies_once_per_event_when_asked() -> None:
    from peercam.notify import Notifications

    class Sent:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        def send(self, message: Any) -> None:
            self.messages.append(message)

        def close(self) -> None:
            pass

    for events, expected in ((["ring", "motion"], 1), (["ring", "missed"], 0)):
        cfg = config_from_dict(
            {"device": {"id": "frontdoor", "name": "Front door"},
             "notify": {"urls": ["json://127.0.0.1:9/x"], "events": events, "web_push": False}}
        )  # fmt: skip
        notifications = Notifications(cfg)
        assert notifications.apprise is not None
        notifications.apprise.close()  # its real sending thread: replaced by a recorder
        sent = Sent()
        notifications.apprise = sent  # type: ignore[assignment]
        notifications.motion(time.time(), "20261204T021930Z-3f9a1c")
        assert len(sent.messages) == expected, events
        if expected:
            assert sent.messages[0].title == "Front door: motion"
            assert "clip" in sent.messages[0].body
        notifications.close()


def test_shrink_luma_averages_blocks_or_picks_pixels() -> None:
    """Motion reads the substream-sized lores stream shrunk to its own size."""
    y = np.arange(360 * 640, dtype=np.uint32).reshape(360, 640) % 251
    y = y.astype(np.uint8)
    small = shrink_luma(y, (160, 90))  # 4x4 blocks
    assert small.shape == (90, 160) and small.dtype == np.uint8 and small.flags.c_contiguous
    assert small[3, 7] == (int(y[12:16, 28:32].sum()) + 8) // 16  # mean, rounded
    odd = shrink_luma(y, (300, 200))  # no whole factor: the nearest pixel
    assert odd.shape == (200, 300) and odd[199, 299] == y[199 * 360 // 200, 299 * 640 // 300]
    same = shrink_luma(y, (640, 360))
    assert np.array_equal(same, y)
    assert shrink_luma(y, (1280, 720)).shape == (360, 640), "never larger than lores"
    assert lores_size(160, (640, 360)) == (160, 90) and lores_size(160, (640, 480)) == (160, 120)
