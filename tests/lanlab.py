"""A home LAN in network namespaces: a device and a viewer on one segment, multicast optional.

::

    device 10.3.0.2 ──┐
                     [router] br0 10.3.0.1, 198.18.0.1 on lo: Mosquitto (1883, WebSockets 8083)
    viewer 10.3.0.3 ──┘

What a browser as people run it meets at home, and what ``NetLab``'s NATs
do not show: Chromium hides its host address behind an mDNS name
(``….local``) and never pairs with a remote 127.0.0.1, so the device must
offer its LAN address and answer the browser's checks (learning the browser
as peer-reflexive) when it cannot resolve the name.  ``block_multicast()``
drops multicast (mDNS, 224.0.0.251:5353) in the device's and viewer's
namespaces, as Wi-Fi client isolation, VPNs, WSL2 and containers do.

Built on ``NetLab``: the same per-process names (``pcnat<pid>x<n>-<role>``,
cleaned by ``remove_stale()``), processes, Mosquitto and ``LabDaemon``; the
router is the lab's ``pub`` namespace.  Every address stays inside the
namespaces created here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser import CHROMIUM
from tests.netlab import PUBLIC_IP, NetLab

LAN_NET = "10.3.0.0/24"
ROUTER_IP = "10.3.0.1"
LAN_DEVICE_IP = "10.3.0.2"
LAN_VIEWER_IP = "10.3.0.3"
MULTICAST = "224.0.0.0/4"


class LanLab(NetLab):
    """Build with ``LanLab(workdir).build()``; ``close()`` always (the fixtures do)."""

    multicast_blocked: bool = False

    def _build(self) -> None:
        ip = "ip"
        pub = self._add("pub")
        dev, view = self._add("dev"), self._add("view")
        pub.run(ip, "addr", "add", f"{PUBLIC_IP}/32", "dev", "lo")
        pub.run(ip, "link", "add", "br0", "type", "bridge")
        pub.run(ip, "addr", "add", f"{ROUTER_IP}/24", "dev", "br0")
        pub.run(ip, "link", "set", "br0", "up")
        for ns, port, host_ip in ((dev, "pdev", LAN_DEVICE_IP), (view, "pview", LAN_VIEWER_IP)):
            _veth(pub.name, port, ns.name)
            pub.run(ip, "link", "set", port, "master", "br0")
            pub.run(ip, "link", "set", port, "up")
            ns.run(ip, "addr", "add", f"{host_ip}/24", "dev", "eth0")
            ns.run(ip, "link", "set", "eth0", "up")
            # A default route as at home: Chromium picks the address it offers
            # from it; nothing beyond the router is routed anywhere.
            ns.run(ip, "route", "add", "default", "via", ROUTER_IP)

    def block_multicast(self) -> None:
        """Drop multicast in and out of the device's and the viewer's namespaces (no mDNS)."""
        for role in ("dev", "view"):
            ns = self.ns(role)
            ns.iptables("-A", "OUTPUT", "-d", MULTICAST, "-j", "DROP")
            ns.iptables("-A", "INPUT", "-d", MULTICAST, "-j", "DROP")
        self.multicast_blocked = True

    def isolate_clients(self) -> None:
        """Drop everything between the device and the viewer (Wi-Fi client isolation);
        both still reach the router (the broker)."""
        self.ns("dev").iptables("-A", "OUTPUT", "-d", LAN_VIEWER_IP, "-j", "DROP")
        self.ns("view").iptables("-A", "OUTPUT", "-d", LAN_DEVICE_IP, "-j", "DROP")

    def lose_first_checks(self, nbytes: int = 800) -> None:
        """Lose the viewer's first ``nbytes`` of UDP to the device (its first ICE checks).

        A Wi-Fi that loses the start of a flow, or any path on which the
        browser's checks reach the device later than right after its answer:
        the device must still be listening when the retransmissions arrive.
        """
        self.ns("view").iptables("-A", "OUTPUT", "-p", "udp", "-d", LAN_DEVICE_IP,
                                 "-m", "quota", "--quota", str(nbytes), "-j", "DROP")  # fmt: skip

    def multicast_drops(self) -> int:
        """Packets the multicast rules dropped so far (proves the browser tried mDNS)."""
        total = 0
        for role in ("dev", "view"):
            out = self.ns(role).run("iptables", "-w", "-L", "-n", "-v", "-x", check=False)
            for line in out.splitlines():
                fields = line.split()
                if len(fields) > 2 and fields[2] == "DROP" and MULTICAST in line:
                    total += int(fields[0])
        return total

    def chromium_in(self, role: str) -> Path:
        """An executable that starts Debian's Chromium inside namespace ``role``."""
        wrapper = self.workdir / f"chromium-in-{role}"
        wrapper.write_text(
            f'#!/bin/sh\nexec {" ".join(self.ns(role).exec_prefix())} {CHROMIUM} "$@"\n',
            encoding="utf-8",
        )
        wrapper.chmod(0o755)
        return wrapper


def _veth(router: str, port: str, lan: str) -> None:
    from tests.netlab import _run

    _run(["ip", "-n", router, "link", "add", port, "type", "veth", "peer", "name", "eth0",
          "netns", lan])  # fmt: skip


def lan_daemon_webrtc(**extra: Any) -> dict[str, Any]:
    """The device's [webrtc] on the LAN: its LAN address only, no STUN/TURN."""
    return {"host_networks": [LAN_NET], "ice_servers": [], **extra}
