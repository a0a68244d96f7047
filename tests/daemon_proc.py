"""The real daemon as a subprocess: ``python -m peercam run --config PATH``.

``DaemonProcess`` writes the TOML config, starts the daemon with its stderr
in a log file, and waits (bounded) until the retained ``status`` on
``{prefix}/{device}/status`` says ``online``.  It never sleeps blindly:
every wait is an event or a deadline-bounded poll, and a daemon that exits
while we wait fails at once with its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from tests.mosquitto import MosquittoBroker, MosquittoNotInstalled

# --- a tiny TOML writer for peercam's flat config shape ------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def toml_value(value: Any) -> str:
    """A TOML inline value (tables inline, so any nesting fits on one line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Path):
        return _toml_string(str(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def to_toml(data: Mapping[str, Any]) -> str:
    """Write ``{"section": {"key": value}}`` (plus top-level scalars) as TOML.

    Values may be str, int, float, bool, Path and lists of those; one level of
    tables, which is all peercam's config uses.
    """
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    for key, value in data.items():
        if key not in tables:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for name, table in tables.items():
        if lines:
            lines.append("")
        lines.append(f"[{toml_key(name)}]")
        for key, value in table.items():
            if isinstance(value, Mapping):
                raise TypeError(f"nested table [{name}.{key}] is not supported by to_toml")
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


# --- config -------------------------------------------------------------------------


def default_config(broker_url: str, *, device: str = "frontdoor") -> dict[str, dict[str, Any]]:
    """A daemon config for tests: test pattern, no audio, ICE on loopback only."""
    return {
        "device": {"id": device, "name": "Front door"},
        "mqtt": {
            "url": broker_url,
            "username": device,
            "password_file": "",
            "topic_prefix": "peercam",
        },
        "camera": {
            "source": "test-pattern",
            "width": 320,
            "height": 240,
            "fps": 30,
            "bitrate": 500_000,
            "keyframe_interval": 60,
        },
        "audio": {"source": "none"},
        "webrtc": {
            "max_viewers": 4,
            "ice_servers": [],
            "host_networks": ["127.0.0.1/32"],
        },
    }


def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in section by section (a deep copy)."""
    merged = copy.deepcopy(dict(base))
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **copy.deepcopy(dict(value))}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --- logs -----------------------------------------------------------------------------

_LOGS_ATTR = "_peercam_logs"


def attach_log(node: Any, title: str, source: Callable[[], str]) -> None:
    """Have ``source()`` shown in the report of the pytest item ``node`` if it fails.

    conftest's ``pytest_runtest_makereport`` reads these back with ``attached_logs``.
    """
    logs = getattr(node, _LOGS_ATTR, None)
    if logs is None:
        logs = []
        setattr(node, _LOGS_ATTR, logs)
    logs.append((title, source))


def attached_logs(node: Any) -> list[tuple[str, Callable[[], str]]]:
    return list(getattr(node, _LOGS_ATTR, []))


def run_in_thread(make: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run the coroutine ``make()`` on a private event loop in a thread; return its result.

    For sync (e.g. module-scoped) fixtures that must not touch the test's loop.
    """
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout)


def assert_no_traceback(log_text: str, what: str = "daemon") -> None:
    """Fail (showing the log) if the log contains a Python traceback."""
    if "Traceback" in log_text:
        raise AssertionError(f"the {what} log contains a Traceback:\n{log_text}")


# --- status watching ------------------------------------------------------------------


class StatusWatcher:
    """Subscribes to one device's retained ``status`` and remembers every one it sees."""

    def __init__(
        self,
        broker_url: str,
        topic: str,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        parts = urlsplit(broker_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.topic = topic
        self.username = username
        self.password = password
        self.statuses: list[dict[str, Any]] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Condition | None = None

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.statuses[-1] if self.statuses else None

    async def __aenter__(self) -> StatusWatcher:
        self._changed = asyncio.Condition()
        self._client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"test-status-{uuid.uuid4().hex[:10]}",
            username=self.username,
            password=self.password,
            timeout=10,
        )
        async with asyncio.timeout(10):
            await self._client.__aenter__()
        try:
            await self._client.subscribe(self.topic, qos=1)
        except BaseException:
            await self._client.__aexit__(None, None, None)
            raise
        self._task = asyncio.create_task(self._read(), name="test-status-watcher")
        return self

    async def _read(self) -> None:
        assert self._client is not None and self._changed is not None
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in self._client.messages:
                try:
                    status = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    status = {"unparsable": repr(message.payload)}
                async with self._changed:
                    self.statuses.append(status)
                    self._changed.notify_all()

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float,
        *,
        alive: Callable[[], str | None] | None = None,
    ) -> dict[str, Any]:
        """The first status seen (in order) matching ``predicate``; bounded.

        ``alive`` is polled; returning a string aborts the wait with that reason.
        """
        assert self._changed is not None
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            for status in self.statuses[seen:]:
                if predicate(status):
                    return status
            seen = len(self.statuses)
            if alive is not None and (why := alive()) is not None:
                raise AssertionError(why)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching status on {self.topic} within {timeout:.0f} s; "
                    f"seen: {self.statuses[-5:]}"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.2)), self._changed:
                    await self._changed.wait()

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(5):
                    await self._client.__aexit__(None, None, None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- the process ----------------------------------------------------------------------


class DaemonProcess:
    """``python -m peercam run --config <workdir>/<device>.toml`` with its log in ``workdir``.

    Args:
        config: the full config as nested dicts (see ``default_config``).
        workdir: where the config and the log go.
        status_auth: (username, password) for the status subscription, when
            the broker requires authentication.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        workdir: Path,
        *,
        status_auth: tuple[str, str] | None = None,
        extra_args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = copy.deepcopy(dict(config))
        #: Extra environment variables for the daemon process (e.g. NOTIFY_SOCKET).
        self.env = dict(env or {})
        self.device: str = self.config["device"]["id"]
        self.prefix: str = self.config.get("mqtt", {}).get("topic_prefix", "peercam")
        self.broker_url: str = self.config["mqtt"]["url"]
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"{self.device}.toml"
        self.log_path = self.workdir / f"{self.device}.log"
        self.status_auth = status_auth
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})  # added to (and overriding) the test's environment
        self.proc: subprocess.Popen[bytes] | None = None
        self.expect_clean_exit = True  # teardown checks exit code 0 after SIGTERM

    # --- topics ---

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/{self.device}/status"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the daemon was never started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "peercam",
            "run",
            "--config",
            str(self.config_path),
            *self.extra_args,
        ]

    # --- life ---

    def start(self) -> DaemonProcess:
        """Write the config and spawn the daemon (does not wait for it)."""
        if self.running:
            raise RuntimeError(f"daemon {self.device} already runs (pid {self.pid})")
        self.config_path.write_text(to_toml(self.config), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        with self.log_path.open("ab") as log:
            log.write(f"--- tests/daemon_proc.py: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal is the test's, not ours
            )
        return self

    def _exited(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return (
                f"daemon {self.device} exited with code {self.proc.returncode}; "
                f"its log:\n{self.log_text()}"
            )
        return None

    def watch_status(self) -> StatusWatcher:
        """A StatusWatcher on this daemon's status topic (use ``async with``)."""
        username, password = self.status_auth or (None, None)
        return StatusWatcher(
            self.broker_url, self.status_topic, username=username, password=password
        )

    async def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Wait (bounded) for a status matching ``predicate``; fails early if the daemon exits."""
        try:
            async with self.watch_status() as watcher:
                return await watcher.wait_for(predicate, timeout, alive=self._exited)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- daemon log:\n{self.log_text()}") from None

    async def wait_online(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the retained status says ``online``; returns that status."""
        return await self.wait_status(lambda s: s.get("state") == "online", timeout)

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    async def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait (bounded, polling) for the process to exit; returns its exit code."""
        if self.proc is None:
            raise RuntimeError("the daemon was never started")
        deadline = time.monotonic() + timeout
        while (rc := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"daemon {self.device} still runs {timeout:.0f} s after the signal; "
                    f"its log:\n{self.log_text()}"
                )
            await asyncio.sleep(0.05)
        return rc

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait (bounded) and return the exit code (SIGKILL if it hangs)."""
        if self.proc is None:
            raise RuntimeError("the daemon was never started")
        self.signal(signal.SIGTERM)
        try:
            return await self.wait_exit(timeout)
        except AssertionError:
            self.kill()
            raise

    def kill(self) -> int | None:
        """SIGKILL now and reap; returns the exit code (-9), None if never started."""
        if self.proc is None:
            return None
        self.expect_clean_exit = False
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        return self.proc.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def assert_no_traceback(self) -> None:
        assert_no_traceback(self.log_text(), f"daemon {self.device}")

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<DaemonProcess {self.device} pid={pid} rc={self.returncode}>"


#: ``daemon_factory``'s type: ``await daemon_factory(broker, device=..., config=...)``.
DaemonFactory = Callable[..., Awaitable[DaemonProcess]]


# --- one broker and daemon for a whole module ---------------------------------------------


@contextlib.contextmanager
def module_device(
    workdir: Path, device: str, label: str, overrides: Mapping[str, Any] | None = None
) -> Iterator[tuple[MosquittoBroker, DaemonProcess]]:
    """A broker and a daemon shared by a module's tests (which it must all survive).

    For module-scoped fixtures: at the end the daemon must exit 0 on SIGTERM
    and have logged no traceback; ``label`` names it in that failure.
    """
    import pytest  # here: bench/ uses this module without pytest installed

    try:
        broker = MosquittoBroker(workdir / "mosquitto").start()
    except MosquittoNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    daemon = DaemonProcess(
        merge_config(default_config(broker.url, device=device), overrides), workdir / "daemon"
    )
    try:
        daemon.start()
        run_in_thread(daemon.wait_online)
        yield broker, daemon
        rc = run_in_thread(daemon.terminate) if daemon.running else daemon.returncode
        assert rc == 0, f"the {label} daemon exited with {rc}:\n{daemon.log_text()}"
        daemon.assert_no_traceback()
    finally:
        daemon.kill()
        broker.stop()


def attach_module_device(
    shared: tuple[MosquittoBroker, DaemonProcess], node: Any, label: str
) -> tuple[MosquittoBroker, DaemonProcess]:
    """``module_device``'s pair for one test: logs attached, daemon still alive."""
    broker, daemon = shared
    attach_log(node, f"mosquitto log ({label})", broker.log_text)
    attach_log(node, f"daemon log ({label})", daemon.log_text)
    assert daemon.running, f"the {label} daemon died in an earlier test:\n{daemon.log_text()}"
    return broker, daemon
