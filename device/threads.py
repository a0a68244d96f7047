"""Blocking calls into hardware on daemon threads, awaited from the event loop.

``asyncio.to_thread`` runs calls on the default executor, whose threads
Python joins at exit; on Python 3.11 ``asyncio.run`` also waits for them
without a limit.  One wedged driver call (a camera that never closes, an
ALSA device that never opens) would then keep a stopped daemon from exiting
until systemd kills it.  ``in_thread`` runs each call on a daemon thread of
its own instead: the caller's timeout still ends the wait, and the process
can still exit.

When the caller stops waiting (a timeout, a shutdown) while the call is
still running, what the call returns later has no owner: ``discard`` is
called with it (on the worker thread), so a camera opened too late is
closed again instead of staying busy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("peercam.threads")


async def in_thread(
    fn: Callable[..., T],
    *args: Any,
    name: str,
    discard: Callable[[T], None] | None = None,
) -> T:
    """Run ``fn(*args)`` on a new daemon thread and return (or raise) its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    abandoned = threading.Event()

    def throw_away(result: T) -> None:
        if discard is None:
            return
        try:
            discard(result)
        except Exception as exc:  # a close that fails must not kill anything else
            log.warning("%s: could not release a late result: %s", name, exc or type(exc).__name__)

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the caller stopped waiting meanwhile
            if error is None:
                _spawn(throw_away, result, name=f"{name}-discard")
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def body() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            error: BaseException | None = exc
            result = None
        else:
            error = None
        if abandoned.is_set():
            if error is None:
                throw_away(result)  # type: ignore[arg-type]
            return
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody will take it
            if error is None:
                throw_away(result)  # type: ignore[arg-type]

    _spawn(body, name=name)
    try:
        return await future
    except asyncio.CancelledError:
        abandoned.set()
        # The result may have landed just before the cancellation did.
        if future.done() and not future.cancelled() and future.exception() is None:
            _spawn(throw_away, future.result(), name=f"{name}-discard")
        raise


def _spawn(target: Callable[..., None], *args: Any, name: str) -> None:
    threading.Thread(target=target, args=args, name=name, daemon=True).start()
