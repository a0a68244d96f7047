"""Bounded waiting for tasks at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any


async def wait_tasks(
    tasks: Sequence[asyncio.Task[Any] | asyncio.Future[Any]],
    timeout: float,
    log: logging.Logger,
) -> None:
    """Wait for (already cancelled or finishing) tasks, at most ``timeout`` seconds.

    A shutdown must end even if a task swallows its cancellation (Python
    3.11's ``wait_for`` can, when its inner future completes at the same
    moment): such a task is named in the log and abandoned.
    """
    pending = [t for t in tasks if not t.done()]
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=timeout)
        for task in stuck:
            name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
            log.warning("task %s did not stop within %.0f s; abandoning it", name, timeout)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("task failed during shutdown: %s: %s", type(exc).__name__, exc)
