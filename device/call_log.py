"""The last N calls with their snapshots, published retained for dashboards.

``{prefix}/{device}/calls`` holds the list (newest first) and
``{prefix}/{device}/snapshot/{call}`` the JPEG of each call still listed;
a call that falls off the list has its snapshot cleared (an empty retained
message deletes it at the broker).  With a state folder the log survives a
restart of the daemon.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .protocol import SESSION_ID_RE, Topics, encode

log = logging.getLogger("peercam.calls")

Publish = Callable[[str, bytes, bool], Awaitable[bool]]


@dataclass(slots=True)
class CallRecord:
    call: str
    at: float  # unix seconds when the button was pressed
    reason: str | None = None  # answered / missed / declined / cancelled; None while ringing
    by: str | None = None
    snapshot: bool = False

    def as_message(self) -> dict[str, object]:
        record: dict[str, object] = {
            "call": self.call,
            "at": round(self.at, 3),
            "reason": self.reason,
            "snapshot": self.snapshot,
        }
        if self.by:
            record["by"] = self.by
        return record


class CallLog:
    """Keeps and publishes the call history."""

    def __init__(self, topics: Topics, publish: Publish, *, keep: int, state_dir: str = "") -> None:
        self.topics = topics
        self._publish = publish
        self.keep = keep
        self.records: list[CallRecord] = []
        self._jpegs: dict[str, bytes] = {}
        self._dropped: list[str] = []
        self._dir = Path(state_dir) if state_dir else None
        self._load()

    # --- persistence --------------------------------------------------------------

    def _load(self) -> None:
        if self._dir is None:
            return
        path = self._dir / "calls.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            records = [CallRecord(**item) for item in data["calls"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("call log %s is unreadable (%s); starting a new one", path, exc)
            return
        for record in records[: self.keep]:
            if not SESSION_ID_RE.fullmatch(record.call):
                continue
            if record.snapshot:
                try:
                    self._jpegs[record.call] = (self._dir / f"{record.call}.jpg").read_bytes()
                except OSError:
                    record.snapshot = False
            self.records.append(record)
        log.info("call log: %d call(s) from %s", len(self.records), path)

    def _save(self) -> None:
        if self._dir is None:
            return
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            for call, jpeg in self._jpegs.items():
                target = self._dir / f"{call}.jpg"
                if not target.exists():
                    target.write_bytes(jpeg)
            for call in self._dropped:
                (self._dir / f"{call}.jpg").unlink(missing_ok=True)
            tmp = self._dir / "calls.json.tmp"
            tmp.write_text(
                json.dumps({"calls": [asdict(r) for r in self.records]}), encoding="utf-8"
            )
            os.replace(tmp, self._dir / "calls.json")
        except OSError as exc:
            log.warning("cannot save the call log in %s: %s", self._dir, exc)

    # --- changes ------------------------------------------------------------------

    def started(self, call: str, at: float) -> None:
        self.records.insert(0, CallRecord(call=call, at=at))
        for old in self.records[self.keep :]:
            self._jpegs.pop(old.call, None)
            self._dropped.append(old.call)
        del self.records[self.keep :]

    def find(self, call: str) -> CallRecord | None:
        return next((r for r in self.records if r.call == call), None)

    def ended(self, call: str, reason: str, by: str | None = None) -> None:
        record = self.find(call)
        if record is not None:
            record.reason = reason
            record.by = by

    def add_snapshot(self, call: str, jpeg: bytes) -> bool:
        record = self.find(call)
        if record is None:
            return False
        record.snapshot = True
        self._jpegs[call] = jpeg
        return True

    def latest_snapshot(self) -> bytes | None:
        """The JPEG of the newest call that has one (Home Assistant's image entity)."""
        return next((self._jpegs[r.call] for r in self.records if r.call in self._jpegs), None)

    # --- publishing ---------------------------------------------------------------

    def message(self) -> dict[str, object]:
        return {"type": "calls", "calls": [r.as_message() for r in self.records]}

    async def publish(self, *, snapshot_of: str | None = None) -> None:
        """Publish the list (and one new snapshot); clear snapshots that fell off."""
        self._save()
        if snapshot_of is not None and snapshot_of in self._jpegs:
            await self._publish(self.topics.snapshot(snapshot_of), self._jpegs[snapshot_of], True)
        dropped, self._dropped = self._dropped, []
        for call in dropped:
            await self._publish(self.topics.snapshot(call), b"", True)
        await self._publish(self.topics.calls, encode(self.message()), True)

    async def republish_all(self) -> None:
        """After (re)connecting: the broker may have lost retained messages."""
        for call, jpeg in self._jpegs.items():
            await self._publish(self.topics.snapshot(call), jpeg, True)
        if self.records:
            await self._publish(self.topics.calls, encode(self.message()), True)
