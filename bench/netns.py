"""A network namespace with a throttled link, for the slow-viewer benchmark (root only).

``throttled_namespace()`` creates a namespace and a veth pair whose host end
(``HOST_IP``) shapes what the host sends into the namespace with a ``tc
tbf`` token bucket (rate, burst, and a queue that holds at most ``latency``
worth of packets; later ones are dropped): a viewer inside sees a link
slower than the stream, like a phone on poor Wi-Fi.  (``netem`` would add
delay too, but this kernel has no ``sch_netem``.)  The addresses are a private /30
that exists only while the block runs; everything is removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

HOST_IP = "10.203.9.1"
NS_IP = "10.203.9.2"
NETWORK = "10.203.9.0/30"


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str
    ns_ip: str
    network: str
    shaping: str
    host_if: str = ""  # the host end of the veth pair (where tc shapes)
    ns_if: str = ""

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install iproute2)"
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


def set_rate(
    ns: Namespace, rate: str | None, burst: str = "32kbit", latency: str = "200ms"
) -> None:
    """Change the namespace's downlink: a new tbf ``rate``, or None for no shaping at all."""
    with contextlib.suppress(subprocess.SubprocessError):
        _run("tc", "qdisc", "del", "dev", ns.host_if, "root")
    if rate is not None:
        _run(
            "tc",
            "qdisc",
            "add",
            "dev",
            ns.host_if,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            burst,
            "latency",
            latency,
        )


def counters(ns: Namespace) -> dict[str, int]:
    """Bytes the host sent towards the namespace (before the shaper drops any: an iptables
    OUTPUT rule's counter, see ``count_sent``) and bytes the namespace received."""
    out = subprocess.run(
        ["iptables", "-w", "-L", "OUTPUT", "-v", "-x", "-n"],
        check=True,
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout
    sent = 0
    for line in out.splitlines():
        fields = line.split()
        if ns.host_if in fields and "ACCEPT" in fields:
            sent = int(fields[1])
    received = int(
        subprocess.run(
            ns.command(["cat", f"/sys/class/net/{ns.ns_if}/statistics/rx_bytes"]),
            check=True,
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    )
    return {"sent": sent, "received": received}


@contextlib.contextmanager
def count_sent(ns: Namespace) -> Iterator[None]:
    """An iptables OUTPUT rule that only counts what the host sends into the namespace."""
    rule = ["OUTPUT", "-o", ns.host_if, "-j", "ACCEPT"]
    _run("iptables", "-w", "-I", *rule)
    try:
        yield
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _run("iptables", "-w", "-D", *rule)


@contextlib.contextmanager
def throttled_namespace(
    rate: str = "1mbit", burst: str = "32kbit", latency: str = "200ms"
) -> Iterator[Namespace]:
    """A namespace whose downlink is ``rate``, queueing at most ``latency`` before dropping."""
    why = available()
    if why is not None:
        raise RuntimeError(f"slow-viewer namespace: {why}")
    tag = f"{os.getpid() % 100000}"
    name, host_if, ns_if = f"pcbench{tag}", f"pcbh{tag}", f"pcbn{tag}"
    shaping = f"tbf rate {rate} burst {burst} latency {latency}"
    try:
        _run("ip", "netns", "add", name)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _run("ip", "link", "set", ns_if, "netns", name)
        _run("ip", "addr", "add", f"{HOST_IP}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "-n", name, "addr", "add", f"{NS_IP}/30", "dev", ns_if)
        _run("ip", "-n", name, "link", "set", ns_if, "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("tc", "qdisc", "add", "dev", host_if, "root", *shaping.split())
        yield Namespace(name, HOST_IP, NS_IP, NETWORK, shaping, host_if, ns_if)
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _run("ip", "link", "del", host_if)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _run("ip", "netns", "del", name)
