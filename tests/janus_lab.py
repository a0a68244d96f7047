"""Janus in the NAT lab: its own namespace on the lab's "internet", started from peercam's config.

::

    device 10.1.0.2 ── [NAT A] ──┐
                               [public] 198.18.0.1: Mosquitto, coturn
    viewer 10.2.0.2 ── [NAT B] ──┤
                                 └── 198.18.3.1 ── 198.18.3.2 [sfu]: Janus (WebSocket 8188)

Janus never uses loopback for media (it skips loopback interfaces), so it
gets a namespace with a real veth (``eth0``) and ``ice_enforce_list =
"eth0"``; the configuration comes from ``peercam.provisioning.janus``, the
generator ``peercam provision export`` uses.  ``JanusServer.kill()`` and
``start()`` let a test take Janus away and bring it back on the same address.
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from peercam.provisioning.janus import JanusSettings, write_janus_config
from tests.netlab import LabProcess, NetLab

SFU_IP = "198.18.3.2"
SFU_GATEWAY = "198.18.3.1"
JANUS_PORT = 8188
JANUS_URL = f"ws://{SFU_IP}:{JANUS_PORT}"


def janus_unavailable() -> str | None:
    if shutil.which("janus") is None:
        return "needs Debian's janus package (apt-get install janus)"
    return None


def add_sfu_namespace(lab: NetLab) -> None:
    """A namespace for Janus, linked to the lab's public namespace (routed, no NAT)."""
    sfu = lab._add("sfu")
    pub = lab.public
    from tests.netlab import _run

    _run(["ip", "-n", pub.name, "link", "add", "ps", "type", "veth", "peer", "name",
          "eth0", "netns", sfu.name])  # fmt: skip
    pub.run("ip", "addr", "add", f"{SFU_GATEWAY}/24", "dev", "ps")
    pub.run("ip", "link", "set", "ps", "up")
    sfu.run("ip", "addr", "add", f"{SFU_IP}/24", "dev", "eth0")
    sfu.run("ip", "link", "set", "eth0", "up")
    sfu.run("ip", "route", "add", "default", "via", SFU_GATEWAY)


@dataclass
class JanusServer:
    lab: NetLab
    folder: Path
    rooms: dict[str, dict[str, object]] = field(default_factory=dict)
    process: LabProcess | None = None
    starts: int = 0

    def write_config(self) -> None:
        settings = JanusSettings(
            ws_ip=SFU_IP,
            ws_port=JANUS_PORT,
            ice_enforce_list="eth0",
            rtp_port_range="30000-30999",
            admin_secret="lab-admin",
            debug_level=4,
            rooms=self.rooms,
        )
        write_janus_config(settings, self.folder)

    def start(self) -> JanusServer:
        self.write_config()
        self.starts += 1
        self.process = self.lab.spawn(
            "sfu", f"janus-{self.starts}", ["janus", "-F", str(self.folder), "-o", "-D"]
        )
        try:
            self.lab.wait_listening("sfu", "tcp", JANUS_PORT, timeout=15)
        except AssertionError:
            raise AssertionError(f"Janus did not listen:\n{self.log_text()}") from None
        return self

    def kill(self) -> None:
        """SIGKILL: what a crash or a power cut looks like (no hangup, the socket drops)."""
        if self.process is not None and self.process.running:
            self.process.proc.send_signal(signal.SIGKILL)
            self.process.proc.wait(10)

    def log_text(self) -> str:
        texts = []
        for n in range(1, self.starts + 1):
            path = self.lab.workdir / f"janus-{n}.log"
            if path.exists():
                texts.append(f"--- janus run {n} ---\n" + path.read_text(errors="replace"))
        return "\n".join(texts)
