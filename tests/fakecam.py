"""Drive the fake Raspberry Pi camera of ``peercam --fake-hardware`` from a test.

``FakeCamera(tmp_path)`` owns one control directory: pass ``env()`` to the
daemon (``daemon_factory(..., args=FAKE_HARDWARE, env=cam.env())``), change
the hardware with ``set(...)`` (cameras present, stall, wedge, platform),
hold the camera like another process with ``hold()``, and read what the fake
hardware did with ``state()`` / ``wait_state(...)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peercam.fakehw import control

FAKE_HARDWARE = ["--fake-hardware"]


@dataclass
class FakeCamera:
    directory: Path

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {control.ENV_DIR: str(self.directory)}

    def set(self, **changes: Any) -> control.Control:
        return control.write_control(self.directory, **changes)

    def state(self) -> control.State:
        return control.read_state(self.directory)

    @contextmanager
    def hold(self, index: int = 0) -> Iterator[None]:
        with control.hold_camera(index, self.directory):
            yield

    async def wait_state(
        self, predicate: Callable[[control.State], bool], timeout: float = 15.0, what: str = ""
    ) -> control.State:
        """Poll (bounded) until the fake hardware's state matches."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"fake camera never reached {what or predicate} within {timeout:.0f} s: {state}"
                )
            await asyncio.sleep(0.05)
