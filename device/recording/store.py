"""The clip folder: MP4s, thumbnails and an index, with caps on size and age.

Runs only on the recorder's worker thread (every call here touches the
disk).  One clip costs one MP4 written once (to a temporary name, renamed
when complete), one small JPEG and a rewrite of ``clips.json``: SD cards
wear with every write, so nothing is appended frame by frame.

Clip ids are made here (``20261204T021930Z-3f9a1c``) and looked up in the
index; a name coming from a viewer is never joined to a path.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("peercam.recording")

CLIP_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
INDEX = "clips.json"
REASONS = ("ring", "answered", "missed", "motion", "manual")


class StorageFault(Exception):
    """The clip folder cannot take a clip now; the message says why, for ``status``."""


def new_clip_id(at: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at)) + "-" + secrets.token_hex(3)


def describe_os_error(exc: OSError, folder: Path) -> str:
    """What a person at the Pi should read for a failed write in ``folder``."""
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return f"disk full: no space left in {folder}"
    if exc.errno == errno.EROFS:
        return f"{folder} is on a read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied writing in {folder} (owner/mode of the folder?)"
    if exc.errno == errno.ENOENT:
        return f"the clip folder {folder} has vanished (disk unmounted?)"
    if exc.errno == errno.EIO:
        return f"I/O error writing in {folder} (failing SD card or disk?)"
    return f"cannot write in {folder}: {exc.strerror or exc}"


@dataclass(slots=True)
class ClipEntry:
    id: str
    at: float  # unix seconds of the event
    start: float  # unix seconds of the clip's first frame
    reason: str
    duration: float
    size: int
    thumb: bool = False
    audio: bool = False
    call: str | None = None

    def as_message(self) -> dict[str, object]:
        message: dict[str, object] = {
            "id": self.id,
            "at": round(self.at, 3),
            "start": round(self.start, 3),
            "reason": self.reason,
            "duration": round(self.duration, 3),
            "size": self.size,
            "thumb": self.thumb,
            "audio": self.audio,
        }
        if self.call:
            message["call"] = self.call
        return message


class ClipStore:
    """The folder and its index; every method blocks (worker thread only)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_total_bytes: int,
        max_age: float,
        min_free_bytes: int,
    ) -> None:
        self.folder = folder
        self.max_total_bytes = max_total_bytes
        self.max_age = max_age  # seconds; 0 = no limit
        self.min_free_bytes = min_free_bytes
        self.entries: list[ClipEntry] = []  # newest first
        self.writes = 0  # files written (MP4 + JPEG + index), for the benchmark

    # --- setup ---------------------------------------------------------------------

    def open(self) -> None:
        """Create the folder if needed and load the index (dropping what is not on disk)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageFault(describe_os_error(exc, self.folder)) from None
        try:
            data = json.loads((self.folder / INDEX).read_text(encoding="utf-8"))
            entries = [ClipEntry(**item) for item in data["clips"]]
        except FileNotFoundError:
            entries = []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("clip index in %s is unreadable (%s); rebuilding it", self.folder, exc)
            entries = []
        self.entries = [
            e
            for e in entries
            if CLIP_ID_RE.fullmatch(e.id) and (self.folder / f"{e.id}.mp4").is_file()
        ]
        self.entries.sort(key=lambda e: e.at, reverse=True)
        self._remove_strays()

    def _remove_strays(self) -> None:
        """Temporary files of a write that a crash or power cut interrupted."""
        for tmp in self.folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    # --- health --------------------------------------------------------------------

    def check(self, need: int = 0) -> None:
        """Raise StorageFault unless a clip of ``need`` bytes can be written now."""
        folder = self.folder
        try:
            if not stat.S_ISDIR(os.stat(folder).st_mode):
                raise StorageFault(f"{folder} is not a folder")
            st = os.statvfs(folder)
        except OSError as exc:
            raise StorageFault(describe_os_error(exc, folder)) from None
        if st.f_flag & os.ST_RDONLY:
            raise StorageFault(f"{folder} is on a read-only file system")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StorageFault(f"permission denied writing in {folder} (owner/mode of the folder?)")
        free = st.f_bavail * st.f_frsize
        if free < need + self.min_free_bytes:
            raise StorageFault(
                f"disk full: {free / 2**20:.1f} MiB free in {folder}, recording needs "
                f"{(need + self.min_free_bytes) / 2**20:.1f} MiB"
            )

    # --- paths -----------------------------------------------------------------------

    def find(self, clip_id: str) -> ClipEntry | None:
        return next((e for e in self.entries if e.id == clip_id), None)

    def mp4_path(self, entry: ClipEntry) -> Path:
        return self.folder / f"{entry.id}.mp4"

    def thumb_path(self, entry: ClipEntry) -> Path:
        return self.folder / f"{entry.id}.jpg"

    def tmp_path(self, clip_id: str, suffix: str) -> Path:
        return self.folder / f".{clip_id}{suffix}.tmp"

    # --- changes ---------------------------------------------------------------------

    def commit(self, entry: ClipEntry, mp4_tmp: Path, jpeg: bytes | None) -> list[ClipEntry]:
        """Move a finished MP4 into place, add its thumbnail and index entry, apply the caps.

        Returns the entries removed by the caps.
        """
        try:
            if jpeg is not None:
                thumb_tmp = self.tmp_path(entry.id, ".jpg")
                thumb_tmp.write_bytes(jpeg)
                self.writes += 1
                os.replace(thumb_tmp, self.thumb_path(entry))
                entry.thumb = True
            os.replace(mp4_tmp, self.mp4_path(entry))
        except OSError as exc:
            mp4_tmp.unlink(missing_ok=True)
            self.tmp_path(entry.id, ".jpg").unlink(missing_ok=True)
            raise StorageFault(describe_os_error(exc, self.folder)) from None
        self.entries.insert(0, entry)
        removed = self.apply_caps()
        self.save()
        return removed

    def apply_caps(self, now: float | None = None) -> list[ClipEntry]:
        """Delete the oldest clips beyond the size cap and those older than the age cap."""
        now = time.time() if now is None else now
        removed: list[ClipEntry] = []
        total = sum(e.size for e in self.entries)
        while self.entries and (
            total > self.max_total_bytes
            or (self.max_age > 0 and now - self.entries[-1].at > self.max_age)
        ):
            old = self.entries.pop()
            total -= old.size
            self._delete_files(old)
            removed.append(old)
        if removed:
            log.info(
                "clips: deleted %d old clip(s) (caps: %.0f MiB, %s); %d left, %.1f MiB",
                len(removed),
                self.max_total_bytes / 2**20,
                f"{self.max_age / 86400:g} days" if self.max_age else "no age limit",
                len(self.entries),
                total / 2**20,
            )
        return removed

    def delete(self, clip_id: str) -> ClipEntry | None:
        entry = self.find(clip_id)
        if entry is None:
            return None
        self.entries.remove(entry)
        self._delete_files(entry)
        self.save()
        return entry

    def update_reason(self, clip_id: str, reason: str) -> bool:
        entry = self.find(clip_id)
        if entry is None or entry.reason == reason:
            return False
        entry.reason = reason
        self.save()
        return True

    def _delete_files(self, entry: ClipEntry) -> None:
        for path in (self.mp4_path(entry), self.thumb_path(entry)):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete %s: %s", path, exc)

    def save(self) -> None:
        tmp = self.folder / f".{INDEX}.tmp"
        try:
            tmp.write_text(
                json.dumps({"clips": [asdict(e) for e in self.entries]}), encoding="utf-8"
            )
            os.replace(tmp, self.folder / INDEX)
            self.writes += 1
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageFault(describe_os_error(exc, self.folder)) from None

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)
