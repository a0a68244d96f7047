"""Shared fixtures: a real Mosquitto, the daemon as a subprocess, Python viewers.

- ``mosquitto_factory(**kwargs) -> MosquittoBroker`` starts a broker (kwargs as
  ``MosquittoBroker``: password_file, acl_file, log_all, ...); ``mosquitto`` is
  one default broker (anonymous, loopback, free port).
- ``await daemon_factory(broker, device=..., config={...overrides}) -> DaemonProcess``
  starts ``python -m peercam run`` and waits for its retained ``online`` status.
  Teardown sends SIGTERM and fails the test if the daemon did not exit 0 or
  logged a Traceback.
- ``await viewer_factory(broker, "alice", device=...) -> Viewer`` gives a
  connected viewer, closed at teardown.

When a test fails, the logs of every broker and daemon it used are attached
to its report (sections "mosquitto log", "daemon <id> log").
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so that `tests.*` imports work however pytest was started
    sys.path.insert(0, str(ROOT))

from tests.daemon_proc import (  # noqa: E402
    DaemonFactory,
    DaemonProcess,
    attach_log,
    attached_logs,
    default_config,
    merge_config,
)
from tests.mosquitto import MosquittoBroker, MosquittoNotInstalled  # noqa: E402
from tests.viewer import Viewer, ViewerFactory  # noqa: E402

LOG_LIMIT = 40_000  # characters of each log attached to a failure report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for title, source in attached_logs(item):
            try:
                text = source()
            except Exception as exc:  # a log we cannot read must not hide the failure
                text = f"(could not read: {exc})"
            if len(text) > LOG_LIMIT:
                text = f"... ({len(text) - LOG_LIMIT} characters cut)\n" + text[-LOG_LIMIT:]
            report.sections.append((title, text or "(empty)"))
    return report


# --- mosquitto ----------------------------------------------------------------------


@pytest.fixture
def mosquitto_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., MosquittoBroker]]:
    """Start brokers on demand; all are stopped at teardown (after daemons and viewers)."""
    brokers: list[MosquittoBroker] = []

    def make(**kwargs: Any) -> MosquittoBroker:
        try:
            broker = MosquittoBroker(tmp_path / f"mosquitto-{len(brokers)}", **kwargs)
        except MosquittoNotInstalled as exc:
            pytest.fail(str(exc), pytrace=False)
        brokers.append(broker)
        title = "mosquitto log" if len(brokers) == 1 else f"mosquitto #{len(brokers)} log"
        attach_log(request.node, title, broker.log_text)
        return broker.start()

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A running Mosquitto on 127.0.0.1 (anonymous access, no persistence)."""
    return mosquitto_factory()


# --- the daemon -----------------------------------------------------------------------


@pytest.fixture
async def daemon_factory(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    mosquitto_factory: Callable[..., MosquittoBroker],
) -> AsyncIterator[DaemonFactory]:
    """Start ``python -m peercam run`` subprocesses; stopped (SIGTERM) and checked at teardown.

    ``await daemon_factory(broker, device="frontdoor", config={"camera": {"fps": 15}})``:
    ``broker`` is a MosquittoBroker or a URL (default: the ``mosquitto`` fixture),
    ``config`` overrides sections of ``default_config``; ``wait=False`` returns
    right after spawning; ``allow_traceback=True`` skips the teardown log check;
    ``args`` are added to ``peercam run`` (e.g. ``["--fake-hardware"]``), ``env``
    to its environment.
    """
    daemons: list[tuple[DaemonProcess, bool]] = []

    async def start(
        broker: MosquittoBroker | str | None = None,
        *,
        device: str = "frontdoor",
        config: dict[str, Any] | None = None,
        wait: bool = True,
        timeout: float = 20.0,
        status_auth: tuple[str, str] | None = None,
        allow_traceback: bool = False,
        extra_args: list[str] | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> DaemonProcess:
        if broker is None:
            broker = request.getfixturevalue("mosquitto")
        url = broker if isinstance(broker, str) else broker.url
        full = merge_config(default_config(url, device=device), config)
        workdir = tmp_path / f"daemon-{len(daemons)}-{device}"
        daemon = DaemonProcess(
            full, workdir, status_auth=status_auth, extra_args=extra_args or args, env=env
        )
        daemons.append((daemon, allow_traceback))
        attach_log(request.node, f"daemon {device} log", daemon.log_text)
        daemon.start()
        if wait:
            await daemon.wait_online(timeout)
        return daemon

    yield start

    problems: list[str] = []
    for daemon, allow_traceback in daemons:
        if daemon.running:
            await _settle(daemon)
            try:
                rc = await daemon.terminate()
            except AssertionError as exc:
                problems.append(str(exc))
                continue
            if rc != 0 and daemon.expect_clean_exit:
                problems.append(f"daemon {daemon.device} exited with {rc} after SIGTERM")
        if not allow_traceback and "Traceback" in daemon.log_text():
            problems.append(f"daemon {daemon.device} logged a Traceback (see its log)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


async def _settle(daemon: DaemonProcess, timeout: float = 3.0) -> None:
    """Before SIGTERM, let the daemon finish closing the sessions viewers just left.

    Teardown closes viewers first; stopping the daemon in the same millisecond
    would test a shutdown race in every test.  That race has its own test, so
    here we wait (bounded) for the status to count no viewer; a daemon with
    sessions left (or an unreachable broker) is stopped anyway after ``timeout``.
    """
    with contextlib.suppress(AssertionError, aiomqtt.MqttError, TimeoutError, OSError):
        await daemon.wait_status(
            lambda s: s.get("viewers") == 0 or s.get("state") != "online", timeout
        )


# --- viewers --------------------------------------------------------------------------


@pytest.fixture
async def viewer_factory(
    request: pytest.FixtureRequest,
    mosquitto_factory: Callable[..., MosquittoBroker],
) -> AsyncIterator[ViewerFactory]:
    """Connected ``Viewer`` objects; every one is closed at teardown.

    ``await viewer_factory(broker, "alice", device="frontdoor", **viewer_kwargs)``.
    """
    viewers: list[Viewer] = []

    async def make(
        broker: MosquittoBroker | str | None,
        viewer_id: str,
        *,
        device: str = "frontdoor",
        connect: bool = True,
        **kwargs: Any,
    ) -> Viewer:
        if broker is None:
            broker = request.getfixturevalue("mosquitto")
        url = broker if isinstance(broker, str) else broker.url
        viewer = Viewer(url, device=device, viewer_id=viewer_id, **kwargs)
        viewers.append(viewer)
        if connect:
            await viewer.connect()
        return viewer

    yield make
    for viewer in reversed(viewers):
        await viewer.close()
