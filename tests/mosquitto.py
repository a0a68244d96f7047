"""A real Mosquitto broker for tests: own config, own port on 127.0.0.1, own log.

``MosquittoBroker(workdir).start()`` writes a config into ``workdir``, starts
``/usr/sbin/mosquitto`` on a free loopback port and returns once the port
accepts connections.  ``restart()`` comes back on the same port, so clients
configured with ``url`` can reconnect; ``kill()`` is the abrupt variant of
``stop()``.  Nothing here listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
INSTALL_HINT = "sudo apt-get install mosquitto"


class MosquittoNotInstalled(RuntimeError):
    """The mosquitto binary is missing; the message says how to install it."""


class MosquittoError(RuntimeError):
    """The broker did not start (the message includes its log)."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or raise MosquittoNotInstalled with the install command."""
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise MosquittoNotInstalled(
        f"the integration tests need a real Mosquitto broker: {INSTALL_HINT}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """One Mosquitto process with a generated config in ``workdir``.

    Args:
        workdir: directory for the config, the log and mosquitto's stderr.
        port: fixed port; by default a free one is picked at the first start.
        allow_anonymous: whether clients without credentials may connect.
        password_file: a ``mosquitto_passwd`` file (enables authentication).
        acl_file: an ACL file (per-topic permissions).
        log_all: ``log_type all`` (every packet) instead of the usual levels.
        extra_config: lines appended verbatim to the config.
        websockets: also listen for MQTT over WebSockets (for browsers) on
            ``ws_port`` (a free port by default); ``ws_url`` is its address.
        ws_certfile / ws_keyfile: serve that listener over TLS (``wss://``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        allow_anonymous: bool = True,
        password_file: Path | str | None = None,
        acl_file: Path | str | None = None,
        log_all: bool = False,
        extra_config: str = "",
        websockets: bool = False,
        ws_port: int | None = None,
        ws_certfile: Path | str | None = None,
        ws_keyfile: Path | str | None = None,
    ) -> None:
        self.binary = find_mosquitto()
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._port = port
        self.allow_anonymous = allow_anonymous
        self.password_file = password_file
        self.acl_file = acl_file
        self.log_all = log_all
        self.extra_config = extra_config
        self.websockets = websockets
        self._ws_port = ws_port
        self.ws_certfile = ws_certfile
        self.ws_keyfile = ws_keyfile
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.stderr_path = self.workdir / "mosquitto.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # --- addresses ------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the broker has no port before its first start()")
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``, the form peercam's ``[mqtt] url`` takes."""
        return f"mqtt://{HOST}:{self.port}"

    @property
    def ws_port(self) -> int:
        if not self.websockets or self._ws_port is None:
            raise RuntimeError("this broker has no WebSockets listener (websockets=True)")
        return self._ws_port

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/mqtt`` (``wss://`` with a certificate): what browsers use."""
        scheme = "wss" if self.ws_certfile else "ws"
        return f"{scheme}://{HOST}:{self.ws_port}/mqtt"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- config -----------------------------------------------------------------------

    def config_text(self) -> str:
        lines = [
            "# generated by tests/mosquitto.py",
            "per_listener_settings false",
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_timestamp true",
            "log_timestamp_format %H:%M:%S",
            "connection_messages true",
        ]
        if self.log_all:
            lines.append("log_type all")
        else:
            lines += [f"log_type {t}" for t in ("error", "warning", "notice", "information")]
        if os.geteuid() == 0:
            # As root, mosquitto would switch to the "mosquitto" user, who cannot
            # write the log in a root-owned temp dir nor read our password file.
            lines.append("user root")
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.websockets:
            lines += [f"listener {self.ws_port} {HOST}", "protocol websockets"]
            if self.ws_certfile is not None:
                lines += [f"certfile {self.ws_certfile}", f"keyfile {self.ws_keyfile}"]
        if self.extra_config:
            lines.append(self.extra_config.rstrip("\n"))
        return "\n".join(lines) + "\n"

    # --- life -----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start the broker and wait (bounded) until its port accepts connections."""
        if self.running:
            raise RuntimeError(f"mosquitto already runs on port {self._port}")
        fixed = self._port is not None
        ws_fixed = self._ws_port is not None
        attempts = 1 if fixed and (ws_fixed or not self.websockets) else 3
        for attempt in range(attempts):
            if not fixed:
                self._port = free_port()
            if self.websockets and not ws_fixed:
                self._ws_port = free_port()
            try:
                self._spawn_and_wait(timeout)
                return self
            except MosquittoError as exc:
                # Another process may have taken the port between free_port() and
                # mosquitto's bind: try another one (never for a fixed port).
                if attempt == attempts - 1 or "in use" not in str(exc):
                    raise
                if not fixed:
                    self._port = None
        raise AssertionError("unreachable")

    def _spawn_and_wait(self, timeout: float) -> None:
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"--- tests/mosquitto.py: start #{self.starts + 1} on port {self.port}\n")
        stderr = self.stderr_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=self.workdir,
            )
        finally:
            stderr.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MosquittoError(
                    f"mosquitto exited with code {self.proc.returncode} at start "
                    f"(port {self.port}); its log:\n{self.log_text()}"
                )
            if port_accepts(self.port) and (not self.websockets or port_accepts(self.ws_port)):
                return
            time.sleep(0.02)
        self._terminate(signal.SIGKILL)
        raise MosquittoError(
            f"mosquitto did not accept connections on {HOST}:{self.port} within "
            f"{timeout:.0f} s; its log:\n{self.log_text()}"
        )

    def _terminate(self, signum: int, timeout: float = 10.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None
        return proc.returncode

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code. Idempotent."""
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: the broker vanishes without closing anything cleanly."""
        return self._terminate(signal.SIGKILL)

    def restart(self, downtime: float = 0.0, timeout: float = 10.0) -> MosquittoBroker:
        """Stop, stay down ``downtime`` seconds, start again on the same port.

        Blocking; from async code prefer ``stop()``, ``await asyncio.sleep()``,
        ``start()`` so the event loop keeps running during the outage.
        """
        self.stop()
        if downtime > 0:
            time.sleep(downtime)
        return self.start(timeout)

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files and re-checks every client."""
        if not self.running:
            raise RuntimeError("mosquitto is not running")
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        """Mosquitto's log file plus anything it wrote to stderr (config errors)."""
        parts = []
        for path in (self.log_path, self.stderr_path):
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text(encoding="utf-8", errors="replace")
                if text.strip():
                    parts.append(text)
        return "\n".join(parts)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<MosquittoBroker {HOST}:{self._port} {state}>"


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file (hashed with ``mosquitto_passwd``) for ``{username: password}``."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path = Path(path)
    path.write_text("", encoding="utf-8")
    for username, password in users.items():
        subprocess.run(
            [tool, "-b", str(path), username, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
    return path
