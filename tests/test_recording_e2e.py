"""Motion and event clips end to end: the real daemon (in this process), real Mosquitto, real files.

The camera is the test pattern's ``doorway`` scene, where nothing moves until a
scripted visitor (a person-sized block) walks through; clips are decoded
completely with PyAV.  The storage faults use a small tmpfs this test mounts
(root only; CI runs as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import av
import pytest
from av.video.frame import PictureType

from peercam.config import config_from_dict
from peercam.daemon import Daemon
from tests.daemon_proc import default_config, merge_config
from tests.mosquitto import MosquittoBroker
from tests.viewer import SignalingError, ViewerFactory
from tests.waiting import wait_until

FPS, KEYINT = 30, 30  # one IDR a second
PREROLL, POSTROLL = 2.0, 2.0


@dataclass
class Door:
    daemon: Daemon
    stop: asyncio.Event
    task: asyncio.Task[None]
    clips: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)

    @property
    def recorder(self) -> Any:
        assert self.daemon.recorder is not None
        return self.daemon.recorder

    def motion_events(self, state: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "motion" and e.get("state") == state]

    def history(self) -> list[dict[str, Any]]:
        raw = self.retained.get("peercam/frontdoor/clips")
        return json.loads(raw)["clips"] if raw else []

    async def ring_filled(self) -> None:
        ring = self.recorder.ring
        await wait_until(
            lambda: len(ring.video) > 1 and ring.video[-1].at - ring.video[0].at >= PREROLL,
            "the pre-roll ring holds the pre-roll",
            timeout=20,
        )


StartDoor = Callable[..., Awaitable[Door]]


@pytest.fixture
async def door_factory(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[StartDoor]:
    doors: list[Door] = []
    listeners: list[asyncio.Task[None]] = []

    async def listen(door: Door, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe("peercam/frontdoor/#", qos=1)
            ready.set()
            async for message in client.messages:
                topic = str(message.topic)
                payload = bytes(message.payload)  # type: ignore[arg-type]
                if topic.endswith("/events"):
                    door.events.append(json.loads(payload))
                elif message.retain or topic.endswith("/clips") or "/thumb/" in topic:
                    door.retained[topic] = payload

    async def start(clips: Path | None = None, **overrides: Any) -> Door:
        clips = clips or tmp_path / "clips"
        base = merge_config(
            default_config(mosquitto.url, device="frontdoor"),
            {
                "camera": {"fps": FPS, "keyframe_interval": KEYINT, "pattern": "doorway"},
                "motion": {"enabled": True, "fps": 10, "quiet": 1.5, "min_interval": 60},
                "recording": {
                    "enabled": True,
                    "dir": str(clips),
                    "preroll": PREROLL,
                    "postroll": POSTROLL,
                    "max_clip": 20,
                    "min_free_mb": 0.25,
                },
                "gpio": {"enabled": False},
                "call": {"ring_timeout": 2},
            },
        )
        config = config_from_dict(merge_config(base, overrides))
        daemon = Daemon(config)
        stop = asyncio.Event()
        door = Door(daemon, stop, asyncio.create_task(daemon.run(stop)), clips)
        doors.append(door)
        subscribed = asyncio.Event()
        listeners.append(asyncio.create_task(listen(door, subscribed)))
        await asyncio.wait_for(subscribed.wait(), 10)
        ready = asyncio.create_task(daemon.ready.wait())
        await asyncio.wait({ready, door.task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if door.task.done():
            door.task.result()
        assert ready.done(), "the daemon did not come online within 20 s"
        return door

    yield start
    for door in doors:
        door.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(door.task, 20)
    for task in listeners:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task


def video_packets(path: Path) -> int:
    """Access units stored in a clip (the camera may skip frame slots on a loaded machine)."""
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(video=0) if p.size)


def decode_all(path: Path) -> dict[str, Any]:
    """Decode every packet of a clip; what a player would see."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        frames = [
            (bool(f.key_frame), PictureType(f.pict_type).name) for f in container.decode(video)
        ]
        duration = float(video.duration * video.time_base) if video.duration else 0.0
    audio_frames = 0
    if has_audio:
        with av.open(str(path)) as container:
            audio_frames = sum(1 for _ in container.decode(audio=0))
    return {"frames": frames, "duration": duration, "audio_frames": audio_frames}


async def test_scripted_visitor_makes_one_motion_event_and_a_clip_with_preroll(
    door_factory: StartDoor,
) -> None:
    door = await door_factory(audio={"source": "test-tone"})
    await door.ring_filled()
    assert door.daemon.motion is not None and not door.daemon.motion.active
    assert door.motion_events("start") == [], "the still doorway scene must not move"

    door.daemon.walk_visitor()
    await wait_until(lambda: door.motion_events("end"), "motion start and end", timeout=20)
    await wait_until(lambda: door.history(), "the clip in the retained history", timeout=20)

    # one visit is one event, not a flood
    starts, ends = door.motion_events("start"), door.motion_events("end")
    assert len(starts) == 1 and len(ends) == 1, door.events
    assert door.daemon.motion.events == 1
    [entry] = door.history()
    assert entry["reason"] == "motion" and starts[0]["clip"] == entry["id"]
    assert entry["audio"] is True

    # pre-roll: from the IDR at or before event - preroll (one IDR a second)
    lead = entry["at"] - entry["start"]
    assert PREROLL - 0.1 <= lead <= PREROLL + KEYINT / FPS + 0.2, entry
    # post-roll: the clip runs on past the last movement, so past event + preroll + postroll
    assert entry["duration"] >= lead + POSTROLL, entry

    mp4 = door.clips / f"{entry['id']}.mp4"
    decoded = decode_all(mp4)
    frames = decoded["frames"]
    assert frames[0] == (True, "I"), "a clip starts on an IDR"
    # every stored access unit decodes; on a loaded machine the camera may have skipped
    # a few frame slots, so the count is checked against the file, and loosely the clock
    assert len(frames) == video_packets(mp4)
    assert len(frames) >= entry["duration"] * FPS * 0.8, (len(frames), entry)
    assert abs(decoded["duration"] - entry["duration"]) < 0.1
    # 20 ms Opus packets over (nearly) the whole clip
    assert decoded["audio_frames"] >= (entry["duration"] - 0.5) * 50, decoded["audio_frames"]
    jpeg = door.retained[f"peercam/frontdoor/thumb/{entry['id']}"]
    assert jpeg[:2] == b"\xff\xd8"
    assert (door.clips / f"{entry['id']}.jpg").read_bytes() == jpeg


async def test_ring_with_nobody_watching_records_a_missed_clip(door_factory: StartDoor) -> None:
    door = await door_factory(motion={"enabled": False})
    await door.ring_filled()
    assert door.daemon.video is not None and door.daemon.video.consumers == 0
    assert door.daemon.calls is not None
    door.daemon.calls.press()
    await wait_until(
        lambda: door.history() and door.history()[0]["reason"] == "missed",
        "the ring's clip listed as missed",
        timeout=20,
    )
    [entry] = door.history()
    call = next(e for e in door.events if e.get("type") == "call")
    assert entry["call"] == call["call"] and call["clip"] == entry["id"]
    mp4 = door.clips / f"{entry['id']}.mp4"
    frames = decode_all(mp4)["frames"]
    assert frames[0][0] and len(frames) == video_packets(mp4)
    assert entry["duration"] >= PREROLL + POSTROLL
    index = json.loads((door.clips / "clips.json").read_text())
    assert [c["id"] for c in index["clips"]] == [entry["id"]]


# --- storage faults ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 3 MiB tmpfs mounted for the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def remount(mnt: Path, mode: str) -> None:
    proc = await asyncio.create_subprocess_exec("mount", "-o", f"remount,{mode}", str(mnt))
    assert await proc.wait() == 0, f"remount {mode} failed"


def recording_fault(status: dict[str, Any] | None) -> str:
    return next((f for f in (status or {}).get("faults", []) if f.startswith("recording:")), "")


async def test_full_readonly_and_vanished_disk_pause_recording_live_goes_on(
    door_factory: StartDoor,
    small_disk: Path,
    viewer_factory: ViewerFactory,
    mosquitto: MosquittoBroker,
) -> None:
    clips = small_disk / "clips"
    door = await door_factory(clips=clips, motion={"enabled": False})
    await door.ring_filled()
    recorder = door.recorder
    viewer = await viewer_factory(mosquitto, "alice")
    watch = await viewer.watch()
    await watch.wait_frames(10)

    async def clip_listed(n: int) -> None:
        await wait_until(lambda: len(door.history()) == n, f"{n} clip(s) listed", timeout=20)

    # a disk with room: a clip
    recorder.trigger("manual")
    await clip_listed(1)

    # disk full (another program filled it): the event is lost, live goes on
    filler = small_disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        while True:
            f.write(b"\0" * 65536)
    await wait_until(lambda: recorder.fault is not None, "a full disk noticed", timeout=10)
    assert "disk full" in recorder.fault
    assert recorder.trigger("manual") is None
    status = await viewer.wait_status(state="online")
    await wait_until(
        lambda: "disk full" in recording_fault(viewer.status), "fault in status", timeout=10
    )
    assert status is not None
    frames = watch.frames
    await watch.wait_more_frames(30)
    assert watch.frames > frames

    # space returns: recording resumes by itself
    filler.unlink()
    await wait_until(lambda: recorder.fault is None, "recording resumed", timeout=15)
    await wait_until(lambda: not recording_fault(viewer.status), "status clear", timeout=10)
    recorder.trigger("manual")
    await clip_listed(2)

    # read-only file system
    await remount(small_disk, "ro")
    await wait_until(lambda: recorder.fault is not None, "read-only noticed", timeout=10)
    assert "read-only" in recorder.fault
    await remount(small_disk, "rw")
    await wait_until(lambda: recorder.fault is None, "recording resumed (rw)", timeout=15)

    # the folder vanishes (a USB disk unmounted): never recreated behind the user's back
    for path in clips.iterdir():
        path.unlink()
    clips.rmdir()
    await wait_until(lambda: recorder.fault is not None, "vanished folder noticed", timeout=10)
    assert "vanished" in recorder.fault
    await asyncio.sleep(1)
    assert not clips.exists()
    clips.mkdir()
    await wait_until(lambda: recorder.fault is None, "recording resumed (folder back)", timeout=15)
    recorder.trigger("manual")
    await wait_until(lambda: any(clips.glob("*.mp4")), "a clip in the new folder", timeout=20)

    await watch.wait_more_frames(30)
    assert watch.connection_state == "connected"


# --- playback -------------------------------------------------------------------------------


def channel_events(watch: Any, event: str) -> list[dict[str, Any]]:
    return [
        m
        for m in (json.loads(x) for x in watch.channel_messages if isinstance(x, str))
        if m.get("event") == event
    ]


async def test_playback_of_a_clip_paces_and_downloads_while_live_goes_on(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    door = await door_factory(motion={"enabled": False}, audio={"source": "test-tone"})
    await door.ring_filled()
    alice = await viewer_factory(mosquitto, "alice")
    live = await alice.watch()
    await live.wait_frames(10)
    door.recorder.trigger("manual")
    await wait_until(lambda: door.history(), "a clip listed", timeout=20)
    [entry] = door.history()
    assert door.daemon.video is not None
    keyframes_before = door.daemon.video.keyframes_in

    bob = await viewer_factory(mosquitto, "bob")
    play = await bob.watch(clip=entry["id"], data_channel="playback", audio=True)
    await wait_until(lambda: channel_events(play, "ended"), "the clip played to its end", 30)
    played = play.last_frame_at - play.first_frame_at  # type: ignore[operator]
    # every recorded frame decoded, at the recorded pace (not as fast as possible)
    stored = video_packets(door.clips / f"{entry['id']}.mp4")
    assert abs(play.frames - stored) <= 2, (play.frames, stored, entry)
    assert played >= entry["duration"] * 0.8, played
    assert play.keyframes[0] == 0 and play.audio_frames > 0
    [state] = channel_events(play, "state")[:1]
    assert state["duration"] == pytest.approx(entry["duration"], abs=0.05)

    # seek back to the start: it plays again from the IDR
    frames = play.frames
    play.channel.send(json.dumps({"cmd": "seek", "to": 0.5}))
    await play.wait_more_frames(FPS)
    assert play.frames >= frames + FPS
    play.channel.send(json.dumps({"cmd": "pause"}))
    await wait_until(lambda: channel_events(play, "state")[-1]["paused"], "paused", 10)

    # download: the MP4's exact bytes
    play.channel.send(json.dumps({"cmd": "download"}))
    await wait_until(lambda: channel_events(play, "download-done"), "download done", 30)
    body = b"".join(m for m in play.channel_messages if isinstance(m, bytes))
    assert body == (door.clips / f"{entry['id']}.mp4").read_bytes()

    # bad commands get an error, not silence
    play.channel.send("not json")
    play.channel.send(json.dumps({"cmd": "seek", "to": "soon"}))
    await wait_until(lambda: len(channel_events(play, "error")) == 2, "two errors", 10)

    # the live viewer went on and paid nothing (playback asks the camera for no IDR)
    more = live.frames
    await live.wait_more_frames(30)
    assert live.frames > more and live.connection_state == "connected"
    # periodic IDRs only (one a second), none asked for by the playback
    elapsed_idrs = door.daemon.video.keyframes_in - keyframes_before
    assert door.daemon.video.source.frames_skipped >= 0 and elapsed_idrs >= 1
    await play.close()


async def test_hostile_clip_requests_get_clear_errors_and_bounded_work(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    door = await door_factory(motion={"enabled": False}, recording={"max_playbacks": 2})
    await door.ring_filled()
    door.recorder.trigger("manual")
    await wait_until(lambda: door.history(), "a clip listed", timeout=20)
    [entry] = door.history()
    mallory = await viewer_factory(mosquitto, "mallory")

    async def offer_error(clip: Any) -> dict[str, Any]:
        with pytest.raises(SignalingError) as caught:
            await mallory.watch(clip=clip)
        return caught.value.error

    unknown = await offer_error("20200101T000000Z-abcdef")
    assert unknown["code"] == "unknown-clip" and "no clip" in unknown["message"]
    for trick in ("../../etc/passwd", "/etc/passwd", "a" * 200, 42, ["x"]):
        error = await offer_error(trick)
        assert error["code"] == "bad-request", (trick, error)
    # delete: only [recording] deleters
    await mallory.send({"type": "delete-clip", "clip": entry["id"]})
    error = await mallory.next_message("error", timeout=10)
    assert error["code"] == "unauthorized" and "deleters" in error["message"]
    assert (door.clips / f"{entry['id']}.mp4").exists()

    # a flood of playback offers: at most max_playbacks play, the others are busy
    results = await asyncio.gather(
        *(mallory.watch(clip=entry["id"]) for _ in range(6)), return_exceptions=True
    )
    playing = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SignalingError)]
    assert len(playing) <= 2 and len(playing) + len(refused) == 6, results
    assert all(r.error["code"] in ("busy", "rate-limited") for r in refused)
    for watch in playing:
        await watch.bye()
    await wait_until(
        lambda: not {p for p in door.recorder._players if not p.closed}, "players freed", 10
    )
    # and it plays again afterwards; a clip has one stream: quality is not for it
    again = await mallory.watch(clip=entry["id"], quality="low")
    await again.wait_frames(5)
    await mallory.send({"type": "quality", "session": again.id, "quality": "low"})
    error = await mallory.next_message("error", timeout=10)
    assert error["code"] == "unsupported" and "recorded clip" in error["message"], error
    await again.wait_frames(again.frames + 5)  # and it plays on


async def test_size_cap_keeps_the_newest_clips_under_the_limit(door_factory: StartDoor) -> None:
    cap_mb = 0.6  # about two 4-5 s clips at 500 kbit/s (grain makes the encoder use it all)
    door = await door_factory(
        motion={"enabled": False},
        camera={"pattern": "noise"},
        recording={"max_total_mb": cap_mb},
    )
    await door.ring_filled()
    made: list[str] = []
    for n in range(1, 5):
        clip = door.recorder.trigger("manual")
        assert clip is not None
        made.append(clip)
        await wait_until(
            lambda clip=clip: any(c["id"] == clip for c in door.history()),
            f"clip {n} listed",
            timeout=20,
        )
    listed = [c["id"] for c in door.history()]
    on_disk = sorted(p.stem for p in door.clips.glob("*.mp4"))
    total = sum(p.stat().st_size for p in door.clips.glob("*.mp4"))
    assert total <= cap_mb * 2**20, total
    assert sorted(listed) == on_disk and listed[0] == made[-1], (listed, made)
    assert made[0] not in listed, "the oldest clip went first"
    assert not (door.clips / f"{made[0]}.jpg").exists()
    assert door.retained.get(f"peercam/frontdoor/thumb/{made[0]}") == b"", "its thumbnail cleared"


async def test_history_survives_a_restart_and_a_broker_that_lost_it(
    door_factory: StartDoor, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    clips = tmp_path / "kept-clips"
    first = await door_factory(clips=clips, motion={"enabled": False})
    await first.ring_filled()
    clip = first.recorder.trigger("manual")
    await wait_until(lambda: first.history(), "a clip listed", timeout=20)
    first.stop.set()
    await asyncio.wait_for(first.task, 20)
    # the broker forgets the retained history (a restore, an admin clearing it)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish("peercam/frontdoor/clips", b"", qos=1, retain=True)
    second = await door_factory(clips=clips, motion={"enabled": False}, recording={"preroll": 0})
    await wait_until(
        lambda: [c["id"] for c in second.history()] == [clip], "the old clip listed", timeout=20
    )
