"""Event clips: the pre-roll ring, clips in progress, the worker that writes them, the history.

Loop side only; the disk is touched on one worker thread (``ClipStore``),
one job per clip.  The recorder watches the hubs through taps (no queue, no
keyframe request: a viewer never pays for it) and keeps the camera running
when pre-roll needs it.

A storage fault (full or read-only disk, permission denied, the folder
gone) pauses recording: events meanwhile are logged and not recorded, the
fault is in ``status``, live viewing and calls go on untouched; a probe
every few seconds resumes recording once the folder takes writes again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RecordingConfig
from ..hub import MediaHub
from ..media import EncodedFrame, VideoInfo
from ..protocol import ErrorCode, ProtocolError, Topics, encode
from ..snapshot import h264_keyframe_to_jpeg
from .mp4 import write_mp4
from .playback import ClipPlayer, PlaybackError, load_clip
from .ring import PreRoll, Stamped
from .store import ClipEntry, ClipStore, StorageFault, describe_os_error, new_clip_id

log = logging.getLogger("peercam.recording")

Publish = Callable[[str, bytes, bool], Awaitable[bool]]

#: Which reason a clip keeps when several events fall into it.
_PRIORITY = {"motion": 0, "manual": 1, "ring": 2, "missed": 3, "answered": 3}
#: Clips finished but not yet written; beyond this an event is not recorded
#: (a disk slower than the events must not make memory grow).
MAX_PENDING = 2
THUMB_WIDTH = 320
#: Seconds between checks of the folder (a stat and an access check, no write;
#: quicker while paused).
PROBE_OK, PROBE_FAULT = 5.0, 2.0


@dataclass(slots=True)
class _Clip:
    id: str
    reason: str
    at: float  # unix time of the event
    event_mono: float
    end: float  # monotonic: stop collecting here (extended by later events)
    limit: float  # monotonic: never beyond (max_clip)
    call: str | None = None
    video: list[Stamped] = field(default_factory=list)
    audio: list[Stamped] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Recorder:
    """Owns the ring, the clip in progress, the worker thread and the history."""

    def __init__(
        self,
        config: RecordingConfig,
        *,
        video: MediaHub,
        audio: MediaHub | None,
        info: VideoInfo,
        bitrate: int,
        topics: Topics,
        publish: Publish,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.video = video
        self.audio = audio
        self.info = info
        self.topics = topics
        self._publish = publish
        self._on_change = on_change
        # Room for the pre-roll plus a keyframe interval at up to 4x the
        # target bitrate (IDR bursts), never under 4 MiB nor over 64 MiB.
        max_bytes = int(bitrate / 8 * (config.preroll + 10) * 4)
        self.ring = PreRoll(config.preroll, min(max(max_bytes, 4 << 20), 64 << 20))
        self.store = ClipStore(
            Path(config.dir),
            max_total_bytes=int(config.max_total_mb * 2**20),
            max_age=config.max_age_days * 86400,
            min_free_bytes=int(config.min_free_mb * 2**20),
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="peercam-clips")
        self.fault: str | None = None
        self._opened = False
        self.active: _Clip | None = None
        self._pending = 0
        self._writing: dict[str, _Clip] = {}
        self._players: set[ClipPlayer] = set()
        self._index_loaded = False  # the folder's index is read (on the worker thread)
        self._link_up = False  # republish_all was called: the broker is there
        self._loading = 0
        self._holding = False
        self._continuous = config.preroll > 0
        self._tasks: set[asyncio.Task[object]] = set()
        self._probe: asyncio.Task[None] | None = None
        self._closing = False
        self.clips_written = 0
        self.events_skipped = 0
        #: (event monotonic time, listed monotonic time) of the last clip (benchmark).
        self.last_latency: float | None = None

    # --- life ----------------------------------------------------------------------

    async def start(self) -> None:
        # The folder is opened on the worker thread, not awaited here: a hung mount
        # must not keep the daemon from coming online (clip jobs queue behind it).
        self._spawn(self._open_in_background())
        self.video.add_tap(self._on_video)
        if self.audio is not None:
            self.audio.add_tap(self._on_audio)
        if self._continuous:
            log.info(
                "recording: %.0f s pre-roll keeps the camera running while nobody watches",
                self.config.preroll,
            )
            self._hold()
        self._probe = asyncio.get_running_loop().create_task(
            self._probe_loop(), name="peercam-recording-probe"
        )
        log.info(
            "recording clips in %s (pre-roll %.0f s, post-roll %.0f s, at most %.0f s; "
            "caps %.0f MiB, %s)",
            self.store.folder,
            self.config.preroll,
            self.config.postroll,
            self.config.max_clip,
            self.config.max_total_mb,
            f"{self.config.max_age_days:g} days" if self.config.max_age_days else "no age limit",
        )

    async def _open_in_background(self) -> None:
        await self._run(self._open_store)
        self._index_loaded = True
        if self._link_up:  # connected meanwhile: the history it skipped
            await self.republish_all()

    def _open_store(self) -> None:
        try:
            self.store.open()
            self.store.check()
        except StorageFault as exc:
            self._opened = self.store.folder.is_dir()
            self._set_fault(str(exc))
            return
        self._opened = True

    async def close(self) -> None:
        self._closing = True
        if self.active is not None:
            self._finish()  # what was collected is still a clip
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10.0)
        self.video.remove_tap(self._on_video)
        if self.audio is not None:
            self.audio.remove_tap(self._on_audio)
        if self._holding:
            self._release()
        for player in self._players:
            player.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., object], *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # --- frames (loop thread, every frame: keep it cheap) ------------------------------

    def _on_video(self, frame: EncodedFrame) -> None:
        now = time.monotonic()
        if self._continuous:
            self.ring.add_video(frame, now)
        clip = self.active
        if clip is not None:
            if clip.video or frame.keyframe:
                clip.video.append(Stamped(frame, now))
            if now >= clip.end:
                self._finish()

    def _on_audio(self, frame: EncodedFrame) -> None:
        now = time.monotonic()
        if self._continuous:
            self.ring.add_audio(frame, now)
        clip = self.active
        if clip is not None and clip.video:
            clip.audio.append(Stamped(frame, now))

    # --- events --------------------------------------------------------------------

    def trigger(self, reason: str, *, call: str | None = None) -> str | None:
        """An event: start a clip (with pre-roll) or extend the one in progress.

        Returns the clip's id, or None when recording is paused or busy.
        """
        now = time.monotonic()
        clip = self.active
        if clip is not None:
            clip.end = min(max(clip.end, now + self.config.postroll), clip.limit)
            if _PRIORITY.get(reason, 0) > _PRIORITY.get(clip.reason, 0):
                clip.reason = reason
            if call is not None:
                clip.call = call
            log.info("clip %s: %s event, recording until +%.0f s", clip.id, reason, clip.end - now)
            return clip.id
        if self.fault is not None:
            self.events_skipped += 1
            log.warning("%s event not recorded: recording is paused (%s)", reason, self.fault)
            return None
        if self._pending >= MAX_PENDING:
            self.events_skipped += 1
            log.warning("%s event not recorded: %d clips still being written", reason, MAX_PENDING)
            return None
        at = time.time()
        video, audio = self.ring.snapshot()
        start = video[0].at if video else now
        clip = _Clip(
            id=new_clip_id(at),
            reason=reason,
            at=at,
            event_mono=now,
            end=now + self.config.postroll,
            limit=start + self.config.max_clip,
            call=call,
            video=video,
            audio=audio,
        )
        self.active = clip
        self._hold()
        self._schedule(clip)
        log.info(
            "clip %s: %s event, %.1f s of pre-roll (ring %d KiB), recording %.0f s more",
            clip.id,
            reason,
            now - start,
            self.ring.bytes // 1024,
            self.config.postroll,
        )
        self._on_change()
        return clip.id

    def extend(self) -> None:
        """Motion still going on: keep the clip in progress running (up to max_clip)."""
        clip = self.active
        if clip is not None:
            clip.end = min(max(clip.end, time.monotonic() + self.config.postroll), clip.limit)

    def _schedule(self, clip: _Clip) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.05, clip.end - time.monotonic()) + 0.5  # a frame normally finishes it
        clip.timer = loop.call_later(delay, self._timer_fired, clip)

    def _timer_fired(self, clip: _Clip) -> None:
        if self.active is not clip:
            return
        if time.monotonic() >= clip.end:
            log.info("clip %s: no frame at its end (camera stalled?); closing it", clip.id)
            self._finish()
        else:
            self._schedule(clip)

    def _finish(self) -> None:
        clip, self.active = self.active, None
        assert clip is not None
        if clip.timer is not None:
            clip.timer.cancel()
        if not self._continuous:
            self._release()
        self._on_change()
        if not clip.video:
            log.warning("clip %s: the camera sent no key frame; nothing to write", clip.id)
            return
        self._pending += 1
        self._writing[clip.id] = clip
        self._spawn(self._write(clip))

    async def _write(self, clip: _Clip) -> None:
        try:
            entry, removed = await self._run(self._write_job, clip)
        except StorageFault as exc:
            log.warning("clip %s lost: %s", clip.id, exc)
            self._set_fault(str(exc))
            return
        except Exception:
            log.exception("clip %s could not be written", clip.id)
            return
        finally:
            self._pending -= 1
            self._writing.pop(clip.id, None)
            clip.video.clear()
            clip.audio.clear()
        if clip.reason != entry.reason:  # the call ended while the clip was written
            await self._update_reason(entry.id, clip.reason)
        self.clips_written += 1
        self.last_latency = time.monotonic() - clip.event_mono
        log.info(
            "clip %s written: %s, %.1f s, %.0f KiB%s",
            entry.id,
            entry.reason,
            entry.duration,
            entry.size / 1024,
            " with audio" if entry.audio else "",
        )
        if entry.thumb:
            with contextlib.suppress(OSError):
                jpeg = await self._run(self.store.thumb_path(entry).read_bytes)
                await self._publish(self.topics_thumb(entry.id), jpeg, True)
        for old in removed:
            await self._publish(self.topics_thumb(old.id), b"", True)
        await self.publish_history()

    def _write_job(self, clip: _Clip) -> tuple[ClipEntry, list[ClipEntry]]:
        """Worker thread: check space, remux, thumbnail, commit (one write of each file)."""
        if not self._opened:
            self.store.open()
            self._opened = True
        need = sum(len(s.frame.data) for s in clip.video) + sum(
            len(s.frame.data) for s in clip.audio
        )
        self.store.check(need + (64 << 10))
        tmp = self.store.tmp_path(clip.id, ".mp4")
        try:
            duration = write_mp4(
                tmp,
                clip.video,
                clip.audio,
                fps=self.info.fps,
                width=self.info.width,
                height=self.info.height,
            )
            size = tmp.stat().st_size
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageFault(describe_os_error(exc, self.store.folder)) from None
        self.store.writes += 1
        try:
            jpeg = h264_keyframe_to_jpeg(clip.video[0].frame.data, max_width=THUMB_WIDTH)
        except Exception as exc:  # a thumbnail is nice to have, the clip is what matters
            log.warning("clip %s: no thumbnail (%s)", clip.id, exc)
            jpeg = None
        start = clip.at - (clip.event_mono - clip.video[0].at)
        entry = ClipEntry(
            id=clip.id,
            at=clip.at,
            start=start,
            reason=clip.reason,
            duration=duration,
            size=size,
            audio=bool(clip.audio),
            call=clip.call,
        )
        removed = self.store.commit(entry, tmp, jpeg)
        return entry, removed

    # --- calls -----------------------------------------------------------------------

    def call_ended(self, call: str, reason: str) -> None:
        """A ring's clip becomes ``answered`` or ``missed`` when the call ends so."""
        if reason not in ("answered", "missed"):
            return
        for clip in (self.active, *self._writing.values()):
            if clip is not None and clip.call == call:
                clip.reason = reason  # taken when its entry is made, or right after
                return
        entry = next((e for e in self.store.entries if e.call == call), None)
        if entry is not None:
            self._spawn(self._update_reason(entry.id, reason))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _update_reason(self, clip_id: str, reason: str) -> None:
        try:
            changed = await self._run(self.store.update_reason, clip_id, reason)
        except StorageFault as exc:
            self._set_fault(str(exc))
            return
        if changed:
            await self.publish_history()

    async def delete(self, clip_id: str) -> bool:
        """Delete one clip (a viewer allowed to asked); False when there is no such clip."""
        try:
            entry = await self._run(self.store.delete, clip_id)
        except StorageFault as exc:
            self._set_fault(str(exc))
            raise
        if entry is None:
            return False
        log.info("clip %s deleted", clip_id)
        await self._publish(self.topics_thumb(clip_id), b"", True)
        await self.publish_history()
        return True

    # --- viewers' requests (signaling calls these; errors are ProtocolErrors) ------------

    def _known(self, clip_id: str, session: str | None = None) -> ClipEntry:
        entry = self.store.find(clip_id)
        if entry is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_CLIP, f"no clip {clip_id!r} here (see the clips list)", session
            )
        return entry

    async def open_player(self, clip_id: str, session: str | None = None) -> ClipPlayer:
        """A player for one clip, or ProtocolError: unknown clip, too many playing, unreadable."""
        limit = self.config.max_playbacks
        self._players = {p for p in self._players if not p.closed}
        if len(self._players) + self._loading >= limit:
            raise ProtocolError(
                ErrorCode.BUSY,
                f"{limit} clip(s) are already playing ([recording] max_playbacks); try later",
                session,
            )
        entry = self._known(clip_id, session)
        self._loading += 1
        try:
            path = self.store.mp4_path(entry)
            video, audio, duration = await self._run(load_clip, path)
        except PlaybackError as exc:
            log.warning("clip %s cannot be played: %s", clip_id, exc)
            raise ProtocolError(ErrorCode.INTERNAL, f"clip {clip_id}: {exc}", session) from None
        finally:
            self._loading -= 1
        player = ClipPlayer(clip_id, path, video, audio, duration)
        self._players.add(player)
        return player

    def record(self, viewer: str) -> str:
        """A viewer's ``record``: a manual clip now (or the one in progress goes on)."""
        if self.fault is not None:
            raise ProtocolError(ErrorCode.BUSY, f"recording is paused: {self.fault}")
        clip = self.trigger("manual")
        if clip is None:
            raise ProtocolError(ErrorCode.BUSY, "clips are still being written; try again")
        log.info("%s asked for a clip: %s", viewer, clip)
        return clip

    async def delete_for(self, viewer: str, clip_id: str) -> None:
        if viewer not in self.config.deleters:
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                f"viewer {viewer!r} may not delete clips (not in [recording] deleters)",
            )
        self._known(clip_id)
        try:
            deleted = await self.delete(clip_id)
        except StorageFault as exc:
            raise ProtocolError(ErrorCode.INTERNAL, f"cannot delete: {exc}") from None
        if not deleted:
            raise ProtocolError(ErrorCode.UNKNOWN_CLIP, f"no clip {clip_id!r} here")
        log.info("clip %s deleted by %s", clip_id, viewer)

    # --- health ----------------------------------------------------------------------

    def _set_fault(self, message: str | None) -> None:
        if message == self.fault:
            return
        if message is None:
            log.info("recording resumes: %s takes clips again", self.store.folder)
        else:
            log.warning("recording paused: %s", message)
        self.fault = message
        self._on_change()

    async def _probe_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(PROBE_FAULT if self.fault else PROBE_OK)
            try:
                await self._run(self._probe_job)
            except StorageFault as exc:
                self._set_fault(str(exc))
            except Exception:
                log.exception("clip folder check failed")
            else:
                self._set_fault(None)

    def _probe_job(self) -> None:
        if not self._opened:
            self.store.open()
            self._opened = True
        self.store.check()

    # --- history -----------------------------------------------------------------------

    def topics_thumb(self, clip_id: str) -> str:
        return f"{self.topics.base}/thumb/{clip_id}"

    @property
    def topic_history(self) -> str:
        return f"{self.topics.base}/clips"

    def history(self) -> dict[str, object]:
        entries = self.store.entries[: self.config.history]
        return {"type": "clips", "clips": [e.as_message() for e in entries]}

    async def publish_history(self) -> None:
        await self._publish(self.topic_history, encode(self.history()), True)

    async def republish_all(self) -> None:
        """After (re)connecting: the broker may have lost retained messages."""
        self._link_up = True
        if not self._index_loaded:
            return  # an empty list now would hide the clips of before a restart
        for entry in self.store.entries[: self.config.history]:
            if entry.thumb:
                with contextlib.suppress(OSError):
                    jpeg = await self._run(self.store.thumb_path(entry).read_bytes)
                    await self._publish(self.topics_thumb(entry.id), jpeg, True)
        await self.publish_history()

    def status(self) -> dict[str, object]:
        return {
            "state": "paused" if self.fault else ("recording" if self.active else "ready"),
            "clips": len(self.store.entries),
            "bytes": self.store.total_bytes,
            "deleters": list(self.config.deleters),
        }

    # --- camera demand -------------------------------------------------------------------

    def _hold(self) -> None:
        if self._holding:
            return
        self._holding = True
        self.video.hold()
        if self.audio is not None:
            self.audio.hold()

    def _release(self) -> None:
        if not self._holding:
            return
        self._holding = False
        self.video.release()
        if self.audio is not None:
            self.audio.release()
