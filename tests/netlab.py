"""A NAT lab in network namespaces: a device and a viewer each behind its own NAT.

::

    device 10.1.0.2 ── 10.1.0.1 [router A] 198.18.1.2 ──┐
                                                       [public] 198.18.0.1: coturn, Mosquitto
    viewer 10.2.0.2 ── 10.2.0.1 [router B] 198.18.2.2 ──┘        198.18.0.99: a black hole

Every address lives inside namespaces the lab creates (the public side uses
198.18.0.0/15, the RFC 2544 benchmarking range, so nothing can leak onto a
real network); the host's own interfaces are never touched.  The routers
emulate NAT kinds with iptables (see ``Nat``), and can drop UDP.  coturn
(``use-auth-secret``, UDP/TCP on 3478, TLS on 5349 with a self-signed
certificate for 198.18.0.1) and Mosquitto (MQTT 1883, WebSockets 8083)
run in the public namespace; Mosquitto also listens on a Unix socket so
the test process, which stays in the host's namespace, can watch topics.

Names carry the creating process's pid (``pcnat<pid>x<n>-<role>``): parallel
runs never collide, and ``remove_stale()`` deletes what a killed run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiomqtt

from tests.daemon_proc import DaemonProcess, StatusWatcher, default_config

PREFIX = "pcnat"

PUBLIC_IP = "198.18.0.1"  # coturn, Mosquitto
BLACKHOLE_IP = "198.18.0.99"  # routed into the void: a server that never answers
ROUTER_A_WAN = "198.18.1.2"
ROUTER_B_WAN = "198.18.2.2"
DEVICE_IP = "10.1.0.2"
VIEWER_IP = "10.2.0.2"
DEVICE_NET = "10.1.0.0/24"
VIEWER_NET = "10.2.0.0/24"

TURN_PORT = 3478
TURNS_PORT = 5349
MQTT_PORT = 1883
WS_PORT = 8083

_counter = itertools.count()


class LabUnavailable(RuntimeError):
    """Namespaces cannot be built here; the message says why (tests skip with it)."""


class Nat(StrEnum):
    #: MASQUERADE plus DNAT of every inbound UDP flow to the host: any outside
    #: address may send to a mapped port (what makes a direct path possible).
    FULL_CONE = "full-cone"
    #: Plain MASQUERADE: replies only from where the host sent to.
    PORT_RESTRICTED = "port-restricted"
    #: MASQUERADE --random-fully: a new external port for every destination.
    SYMMETRIC = "symmetric"


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 20) -> str:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )
    return proc.stdout


def unavailable_reason() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces, veth pairs, iptables)"
    for tool in ("ip", "ss", "iptables", "sysctl", "turnserver", "mosquitto", "openssl"):
        if shutil.which(tool) is None:
            return (
                f"the NAT lab needs {tool!r} "
                "(apt-get install iproute2 iptables procps coturn mosquitto openssl)"
            )
    probe = f"{PREFIX}{os.getpid()}probe{next(_counter)}"
    try:
        _run(["ip", "netns", "add", probe])
        try:
            _run(["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n"])
        finally:
            _run(["ip", "netns", "del", probe], check=False)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create network namespaces with iptables here: {exc}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete lab namespaces whose creating process is gone (and what still runs in them)."""
    removed = []
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        digits = name[len(PREFIX) :].split("x", 1)[0].split("probe", 1)[0]
        if not digits.isdigit() or _pid_alive(int(digits)):
            continue
        for pid in _run(["ip", "netns", "pids", name], check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


@dataclass
class Namespace:
    name: str

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(self, *argv: str, check: bool = True) -> str:
        return _run([*self.exec_prefix(), *argv], check=check)

    def iptables(self, *args: str) -> None:
        self.run("iptables", "-w", *args)


@dataclass
class LabProcess:
    """A process the lab started in one of its namespaces; stopped by ``NetLab.close``."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@dataclass
class Coturn:
    secret: str
    cert: Path
    process: LabProcess
    config_path: Path

    @property
    def urls(self) -> dict[str, str]:
        return {
            "stun": f"stun:{PUBLIC_IP}:{TURN_PORT}",
            "udp": f"turn:{PUBLIC_IP}:{TURN_PORT}?transport=udp",
            "tcp": f"turn:{PUBLIC_IP}:{TURN_PORT}?transport=tcp",
            "tls": f"turns:{PUBLIC_IP}:{TURNS_PORT}?transport=tcp",
        }


@dataclass
class Broker:
    process: LabProcess
    unix_socket: Path

    @property
    def url(self) -> str:
        return f"mqtt://{PUBLIC_IP}:{MQTT_PORT}"

    @property
    def ws_url(self) -> str:
        return f"ws://{PUBLIC_IP}:{WS_PORT}"


@dataclass
class NetLab:
    """Build with ``NetLab(workdir).build()``; always ``close()`` (the fixture does)."""

    workdir: Path
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}x{next(_counter)}")
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    processes: list[LabProcess] = field(default_factory=list)
    coturn: Coturn | None = None
    broker: Broker | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Unix socket paths are limited to 108 bytes: keep them short.
        self.sockdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))

    # --- namespaces -----------------------------------------------------------------

    def ns(self, role: str) -> Namespace:
        return self.namespaces[role]

    @property
    def public(self) -> Namespace:
        return self.ns("pub")

    @property
    def device(self) -> Namespace:
        return self.ns("dev")

    @property
    def viewer(self) -> Namespace:
        return self.ns("view")

    def _add(self, role: str) -> Namespace:
        ns = Namespace(f"{self.tag}-{role}")
        _run(["ip", "netns", "add", ns.name])
        self.namespaces[role] = ns
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def build(self) -> NetLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        pub = self._add("pub")
        ra, rb = self._add("ra"), self._add("rb")
        dev, view = self._add("dev"), self._add("view")
        ip = "ip"
        # The "internet": the servers' address on its loopback, one link per router.
        pub.run(ip, "addr", "add", f"{PUBLIC_IP}/32", "dev", "lo")
        pub.run(ip, "route", "add", "blackhole", f"{BLACKHOLE_IP}/32")
        pub.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for router, side, wan, lan_ns, host_ip in (
            (ra, "pa", ROUTER_A_WAN, dev, DEVICE_IP),
            (rb, "pb", ROUTER_B_WAN, view, VIEWER_IP),
        ):
            net = wan.rsplit(".", 1)[0]
            lan = host_ip.rsplit(".", 1)[0]
            _run([ip, "-n", pub.name, "link", "add", side, "type", "veth", "peer", "name",
                  "wan", "netns", router.name])  # fmt: skip
            pub.run(ip, "addr", "add", f"{net}.1/24", "dev", side)
            pub.run(ip, "link", "set", side, "up")
            router.run(ip, "addr", "add", f"{wan}/24", "dev", "wan")
            router.run(ip, "link", "set", "wan", "up")
            router.run(ip, "route", "add", "default", "via", f"{net}.1")
            _run([ip, "-n", router.name, "link", "add", "lan", "type", "veth", "peer", "name",
                  "eth0", "netns", lan_ns.name])  # fmt: skip
            router.run(ip, "addr", "add", f"{lan}.1/24", "dev", "lan")
            router.run(ip, "link", "set", "lan", "up")
            router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            lan_ns.run(ip, "addr", "add", f"{host_ip}/24", "dev", "eth0")
            lan_ns.run(ip, "link", "set", "eth0", "up")
            lan_ns.run(ip, "route", "add", "default", "via", f"{lan}.1")
        self.set_nat("a", Nat.PORT_RESTRICTED)
        self.set_nat("b", Nat.PORT_RESTRICTED)

    def set_nat(self, router: str, nat: Nat, *, block_udp: bool = False) -> None:
        """Make router ``"a"`` (device) or ``"b"`` (viewer) this kind of NAT.

        ``block_udp`` drops every UDP packet the router would forward (a network
        that allows only TCP out, as some corporate and hotel networks do).
        """
        ns = self.ns(f"r{router}")
        host = DEVICE_IP if router == "a" else VIEWER_IP
        for table in ("nat", "filter"):
            ns.iptables("-t", table, "-F")
        masquerade = ["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
        if nat is Nat.SYMMETRIC:
            masquerade.append("--random-fully")
        ns.iptables(*masquerade)
        if nat is Nat.FULL_CONE:
            ns.iptables("-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "udp",
                        "-j", "DNAT", "--to-destination", host)  # fmt: skip
        if block_udp:
            ns.iptables("-A", "FORWARD", "-p", "udp", "-j", "DROP")

    def block_udp_between_routers(self) -> None:
        """Drop UDP between the two NATs' public addresses (direct paths), not to coturn."""
        for name, other in (("ra", ROUTER_B_WAN), ("rb", ROUTER_A_WAN)):
            self.ns(name).iptables("-A", "FORWARD", "-p", "udp", "-d", other, "-j", "DROP")

    # --- processes ------------------------------------------------------------------

    def spawn(
        self,
        role: str,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> LabProcess:
        """Start ``argv`` inside namespace ``role`` with its output in ``<workdir>/<name>.log``."""
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*self.ns(role).exec_prefix(), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd or self.workdir,
                start_new_session=True,
            )
        process = LabProcess(name, proc, log_path)
        self.processes.append(process)
        return process

    def env(self) -> dict[str, str]:
        """The environment for lab processes: trust the lab's TLS certificate (turns:)."""
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
        if self.coturn is not None:
            env["SSL_CERT_FILE"] = str(self.coturn.cert)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def wait_listening(self, role: str, proto: str, port: int, timeout: float = 10.0) -> None:
        """Wait (bounded) until something in namespace ``role`` listens on ``port``/``proto``."""
        flag = "-lun" if proto == "udp" else "-ltn"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.ns(role).run("ss", "-H", flag, check=False)
            if any(f":{port} " in line + " " for line in out.splitlines()):
                return
            time.sleep(0.05)
        raise AssertionError(f"nothing listens on {port}/{proto} in {role} within {timeout} s")

    # --- servers --------------------------------------------------------------------

    def make_cert(self) -> Path:
        """A self-signed certificate for 198.18.0.1 (subjectAltName IP), key alongside."""
        cert, key = self.workdir / "turn-cert.pem", self.workdir / "turn-key.pem"
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
              f"/CN={PUBLIC_IP}", "-addext", f"subjectAltName=IP:{PUBLIC_IP}",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-keyout", str(key), "-out", str(cert)])  # fmt: skip
        return cert

    def start_coturn(self, secret: str, *, extra: Sequence[str] = ()) -> Coturn:
        """Real coturn (use-auth-secret) on 198.18.0.1 with the docs' relay restrictions."""
        cert = self.make_cert()
        conf = self.workdir / "turnserver.conf"
        conf.write_text(
            coturn_config(
                secret=secret,
                cert=cert,
                key=self.workdir / "turn-key.pem",
                workdir=self.workdir,
                extra=extra,
            ),
            encoding="utf-8",
        )
        process = self.spawn("pub", "coturn", ["turnserver", "-c", str(conf)], env=self.env())
        self.coturn = Coturn(secret, cert, process, conf)
        for proto, port in (("udp", TURN_PORT), ("tcp", TURN_PORT), ("tcp", TURNS_PORT)):
            self.wait_listening("pub", proto, port)
        return self.coturn

    def stop_coturn(self) -> None:
        if self.coturn is not None:
            self.coturn.process.stop()

    def start_mosquitto(self) -> Broker:
        sock = self.sockdir / "mqtt.sock"
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "# generated by tests/netlab.py",
                    "per_listener_settings false",
                    "allow_anonymous true",
                    "persistence false",
                    "user root",
                    "log_dest stdout",
                    "log_timestamp true",
                    "connection_messages true",
                    f"listener {MQTT_PORT} {PUBLIC_IP}",
                    f"listener {WS_PORT} {PUBLIC_IP}",
                    "protocol websockets",
                    f"listener 0 {sock}",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        process = self.spawn("pub", "mosquitto", ["mosquitto", "-c", str(conf)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited at start:\n{process.log_text()}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"mosquitto did not start:\n{process.log_text()}")
        self.wait_listening("pub", "tcp", MQTT_PORT)
        self.broker = Broker(process, sock)
        return self.broker

    # --- the end --------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process, delete every namespace. Idempotent, never raises."""
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()
        for ns in reversed(list(self.namespaces.values())):
            # Anything still inside (a child a process left behind) is ours.
            for pid in _run(["ip", "netns", "pids", ns.name], check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run(["ip", "netns", "del", ns.name], check=False)
        self.namespaces.clear()
        shutil.rmtree(self.sockdir, ignore_errors=True)


def coturn_config(
    *, secret: str, cert: Path, key: Path, workdir: Path, extra: Sequence[str] = ()
) -> str:
    """The lab's turnserver.conf: the docs' example, plus the lab's one exception.

    docs/coturn/turnserver.conf denies relaying to every private and special
    range, 198.18.0.0/15 included; the lab's "internet" *is* 198.18.0.0/15,
    so here that one range is allowed again (``allowed-peer-ip``) and
    everything else stays denied (10.x, where the lab's hosts are, too).
    """
    docs = Path(__file__).resolve().parent.parent / "docs" / "coturn" / "turnserver.conf"
    lines = []
    for raw in docs.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_name = line.split("=", 1)[0]
        if key_name in _LAB_REPLACES:
            continue
        lines.append(line)
    lines += [
        f"listening-ip={PUBLIC_IP}",
        f"relay-ip={PUBLIC_IP}",
        f"external-ip={PUBLIC_IP}",
        f"static-auth-secret={secret}",
        f"cert={cert}",
        f"pkey={key}",
        f"userdb={workdir / 'turndb'}",
        f"pidfile={workdir / 'turnserver.pid'}",
        "log-file=stdout",
        "simple-log",
        "realm=peercam.lab",
        "# the lab's exception: its public side is 198.18.0.0/15",
        "allowed-peer-ip=198.18.0.0-198.19.255.255",
        *extra,
    ]
    return (
        "# generated by tests/netlab.py from docs/coturn/turnserver.conf\n"
        + "\n".join(lines)
        + "\n"
    )


#: Settings of the docs' example that the lab sets itself.
_LAB_REPLACES = {
    "listening-ip",
    "relay-ip",
    "external-ip",
    "static-auth-secret",
    "cert",
    "pkey",
    "realm",
    "log-file",
    "syslog",
    "pidfile",
    "userdb",
    "proc-user",
    "proc-group",
    "server-name",
}


# --- peercam in the lab ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent

STUN = f"stun:{PUBLIC_IP}:{TURN_PORT}"
TURN_UDP = f"turn:{PUBLIC_IP}:{TURN_PORT}?transport=udp"
TURN_TCP = f"turn:{PUBLIC_IP}:{TURN_PORT}?transport=tcp"
TURNS = f"turns:{PUBLIC_IP}:{TURNS_PORT}?transport=tcp"
ALL_URLS = [STUN, TURN_UDP, TURN_TCP, TURNS]

_PATH = re.compile(r"connected in (\d+) ms \((\w+) (\S+) ⇄ (\w+) (\S+)\)")


def device_path(daemon: DaemonProcess) -> tuple[str, str]:
    """(local type, remote type) of the device's selected pair, from its log."""
    found = _PATH.findall(daemon.log_text())
    assert found, f"the daemon never logged a connected session:\n{daemon.log_text()}"
    _, local, _, remote, _ = found[-1]
    return local, remote


class UnixStatusWatcher(StatusWatcher):
    """``StatusWatcher`` through the lab broker's Unix socket (the test stays outside)."""

    def __init__(self, socket_path: Path, topic: str) -> None:
        super().__init__(f"mqtt://{PUBLIC_IP}:{MQTT_PORT}", topic)
        self.socket_path = socket_path

    async def __aenter__(self) -> UnixStatusWatcher:
        self._changed = asyncio.Condition()
        self._client = aiomqtt.Client(
            str(self.socket_path),
            1,  # paho wants a port, even for a Unix socket
            transport="unix",
            identifier=f"test-status-{uuid.uuid4().hex[:10]}",
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


class LabDaemon(DaemonProcess):
    """``python -m peercam run`` inside the lab's device namespace."""

    def __init__(self, lab: NetLab, config: dict[str, Any], workdir: Path) -> None:
        super().__init__(config, workdir)
        self.lab = lab

    def command(self) -> list[str]:
        cert = [f"SSL_CERT_FILE={self.lab.coturn.cert}"] if self.lab.coturn else []
        return [*self.lab.device.exec_prefix(), "env", *cert, *super().command()]

    def watch_status(self) -> StatusWatcher:
        assert self.lab.broker is not None
        return UnixStatusWatcher(self.lab.broker.unix_socket, self.status_topic)


def lab_daemon_config(
    lab: NetLab,
    *,
    ice_servers: Sequence[str],
    secret_file: Path | None,
    device: str = "frontdoor",
    webrtc: dict[str, Any] | None = None,
) -> dict[str, Any]:
    assert lab.broker is not None
    config = default_config(lab.broker.url, device=device)
    config["webrtc"].update(
        {
            "ice_servers": list(ice_servers),
            "host_networks": [DEVICE_NET],
            "turn_secret_file": str(secret_file) if secret_file else "",
            "connect_timeout": 10.0,
            **(webrtc or {}),
        }
    )
    return config


async def run_in_namespace(
    ns: Namespace, argv: Sequence[str], *, env: dict[str, str], timeout: float
) -> tuple[int, str]:
    """Run ``argv`` in ``ns`` (bounded); returns (exit code, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *ns.exec_prefix(),
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(
            f"{' '.join(argv)} still ran after {timeout} s:\n{out.decode(errors='replace')}"
        ) from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def run_lab_viewer(lab: NetLab, *args: str, timeout: float = 20.0) -> dict[str, Any]:
    """tests/netlab_viewer.py in the viewer namespace; returns its JSON result."""
    assert lab.broker is not None
    argv = [
        sys.executable, "-m", "tests.netlab_viewer", "--broker", lab.broker.url,
        "--host-network", VIEWER_NET, "--timeout", str(timeout), *args,
    ]  # fmt: skip
    rc, out = await run_in_namespace(lab.viewer, argv, env=lab.env(), timeout=timeout * 3 + 10)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        raise AssertionError(f"the lab viewer failed (exit {rc}):\n{out}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["log"] = out
    return result
