"""Blocking calls on daemon threads (peercam.threads): results, errors, late results, exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from peercam.threads import in_thread
from tests.waiting import wait_until


async def test_the_result_and_the_error_come_back() -> None:
    assert await in_thread(lambda a, b: a + b, 2, 3, name="add") == 5
    with pytest.raises(ValueError, match="no camera"):
        await in_thread(_raise, ValueError("no camera"), name="fail")


def _raise(exc: BaseException) -> None:
    raise exc


async def test_a_result_that_arrives_after_the_caller_gave_up_is_discarded() -> None:
    """A camera that opens after the start timed out is closed, not left busy."""
    release = threading.Event()
    discarded: list[str] = []

    def slow_open() -> str:
        release.wait(10)
        return "camera"

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            in_thread(slow_open, name="open", discard=discarded.append), timeout=0.05
        )
    assert discarded == []
    release.set()
    await wait_until(lambda: discarded == ["camera"], "the late camera was not closed")


async def test_an_error_after_the_caller_gave_up_discards_nothing() -> None:
    release = threading.Event()
    discarded: list[object] = []

    def failing() -> str:
        release.wait(10)
        raise OSError("busy")

    task = asyncio.create_task(in_thread(failing, name="open", discard=discarded.append))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await asyncio.sleep(0.2)
    assert discarded == []


WEDGED = """
import asyncio, time
from peercam.threads import in_thread

async def main():
    try:
        await asyncio.wait_for(in_thread(time.sleep, 300, name="wedged-close"), 0.1)
    except TimeoutError:
        print("gave up", flush=True)

asyncio.run(main())
print("exiting", flush=True)
"""


def test_a_wedged_call_does_not_keep_the_process_from_exiting() -> None:
    """asyncio.to_thread's executor thread would hold the exit for the whole 300 s."""
    done = subprocess.run(
        [sys.executable, "-c", WEDGED], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gave", "up", "exiting"]
