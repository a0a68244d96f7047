"""pytest fixtures for Janus in the NAT lab (``from tests.janus_fixtures import ...``).

- ``lab``: the NAT lab (full-cone NATs, so peer-to-peer works with STUN alone),
  coturn (STUN) and Mosquitto in its public namespace, plus the ``sfu`` namespace.
- ``janus``: a ``JanusServer`` (not started: ``janus.start()``, after setting
  ``janus.rooms`` if the test wants rooms in its config).
- ``relay_daemon``: ``await relay_daemon(policy="always", ...)`` starts the daemon
  behind NAT A with ``[relay] mode = "janus"`` and the given ``[relay]`` keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import attach_log
from tests.janus_lab import JANUS_URL, JanusServer, add_sfu_namespace, janus_unavailable
from tests.netlab import STUN, LabDaemon, Nat, NetLab, lab_daemon_config, remove_stale
from tests.netlab_fixtures import LAB_SECRET, UNAVAILABLE

needs_janus_lab = [
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
    pytest.mark.skipif(janus_unavailable() is not None, reason=janus_unavailable() or ""),
]


@pytest.fixture(name="lab")
def lab_fixture(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NetLab]:
    remove_stale()
    netlab = NetLab(tmp_path / "lab")
    try:
        netlab.build()
        # Full-cone NATs: peer-to-peer works without TURN (the first viewer's path),
        # so the only reason a viewer goes through Janus is the device's policy.
        netlab.set_nat("a", Nat.FULL_CONE)
        netlab.set_nat("b", Nat.FULL_CONE)
        add_sfu_namespace(netlab)
        coturn = netlab.start_coturn(LAB_SECRET)  # STUN: the peer-to-peer viewer's srflx path
        attach_log(request.node, "coturn log", coturn.process.log_text)
        broker = netlab.start_mosquitto()
        attach_log(request.node, "lab mosquitto log", broker.process.log_text)
        yield netlab
    finally:
        netlab.close()


@pytest.fixture(name="janus")
def janus_fixture(lab: NetLab, request: pytest.FixtureRequest) -> JanusServer:
    server = JanusServer(lab, lab.workdir / "janus")
    attach_log(request.node, "janus log", server.log_text)
    return server


RelayDaemonFactory = Callable[..., Awaitable[LabDaemon]]


@pytest.fixture(name="relay_daemon")
async def relay_daemon_fixture(
    lab: NetLab, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[RelayDaemonFactory]:
    daemons: list[LabDaemon] = []

    async def start(*, ice_servers: Sequence[str] = (STUN,), **relay: Any) -> LabDaemon:
        workdir = tmp_path / f"daemon-{len(daemons)}"
        workdir.mkdir()
        secret_file = workdir / "turn_secret"
        secret_file.write_text(LAB_SECRET + "\n", encoding="utf-8")
        config = lab_daemon_config(lab, ice_servers=ice_servers, secret_file=secret_file)
        config["relay"] = {"mode": "janus", "url": JANUS_URL, "room": 4242, **relay}
        daemon = LabDaemon(lab, config, workdir)
        daemons.append(daemon)
        attach_log(request.node, "daemon log", daemon.log_text)
        daemon.start()
        await daemon.wait_online(30)
        return daemon

    yield start
    problems = []
    for daemon in daemons:
        if daemon.running:
            rc = await daemon.terminate()
            if rc != 0:
                problems.append(f"daemon exited with {rc} after SIGTERM")
        if "Traceback" in daemon.log_text():
            problems.append("the daemon logged a Traceback (see its log)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
