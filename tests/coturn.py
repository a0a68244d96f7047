"""A real coturn on 127.0.0.1 for tests that need no namespaces (no root).

``LocalCoturn(workdir, secret).start()`` runs ``turnserver`` with
``use-auth-secret`` on a free port (UDP and TCP), no TLS, and waits until it
answers a STUN Binding request; ``stop()`` ends it.  The NAT lab
(tests/netlab.py) runs its own coturn with TLS inside a namespace.
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

from tests.mosquitto import free_port

HOST = "127.0.0.1"


class CoturnNotInstalled(RuntimeError):
    pass


def _binding_answered(port: int) -> bool:
    request = bytes.fromhex("0001 0000 2112a442") + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, (HOST, port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return data[:2] == b"\x01\x01"


class LocalCoturn:
    def __init__(self, workdir: Path, secret: str, *, port: int | None = None) -> None:
        binary = shutil.which("turnserver")
        if binary is None:
            raise CoturnNotInstalled("these tests need a real coturn: apt-get install coturn")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.secret = secret
        self.port = port or free_port()
        self.log_path = self.workdir / "coturn.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, kind: str = "udp") -> str:
        if kind == "stun":
            return f"stun:{HOST}:{self.port}"
        return f"turn:{HOST}:{self.port}?transport={kind}"

    def start(self, timeout: float = 10.0) -> LocalCoturn:
        conf = self.workdir / "turnserver.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listening-ip={HOST}",
                    f"relay-ip={HOST}",
                    f"listening-port={self.port}",
                    "min-port=49152",
                    "max-port=65535",
                    "use-auth-secret",
                    f"static-auth-secret={self.secret}",
                    "realm=peercam.test",
                    "no-tls",
                    "no-dtls",
                    "no-cli",
                    "no-tcp-relay",
                    "no-multicast-peers",
                    f"userdb={self.workdir / 'turndb'}",
                    f"pidfile={self.workdir / 'turnserver.pid'}",
                    "log-file=stdout",
                    "simple-log",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"coturn exited at start:\n{self.log_text()}")
            if _binding_answered(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"coturn did not answer within {timeout} s:\n{self.log_text()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
