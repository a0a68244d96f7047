"""Bounded waiting for a condition: what tests do instead of a fixed sleep before a check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(
    predicate: Callable[[], object], what: str, timeout: float = 10.0, every: float = 0.02
) -> None:
    """Poll ``predicate`` until it is true; after ``timeout`` seconds fail, naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(every)
