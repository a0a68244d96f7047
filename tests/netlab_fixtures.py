"""pytest fixtures for the NAT lab: ``from tests.netlab_fixtures import lab_fixture, ...``.

- ``lab``: a built ``NetLab`` with coturn (secret ``LAB_SECRET``) and Mosquitto
  running in its public namespace; torn down (processes, namespaces) always.
- ``lab_daemon``: ``await lab_daemon(ice_servers=[...], secret=..., webrtc={...})``
  starts the daemon in the device namespace, waits for ``online``; stopped
  with SIGTERM at teardown, which fails if it did not exit 0 or logged a Traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import attach_log
from tests.netlab import LabDaemon, NetLab, lab_daemon_config, remove_stale, unavailable_reason

LAB_SECRET = "lab-static-auth-secret-7f3a"

UNAVAILABLE = unavailable_reason()
needs_lab = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")

LabDaemonFactory = Callable[..., Awaitable[LabDaemon]]


@pytest.fixture(name="lab")
def lab_fixture(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NetLab]:
    remove_stale()
    netlab = NetLab(tmp_path / "lab")
    try:
        netlab.build()
        coturn = netlab.start_coturn(LAB_SECRET)
        attach_log(request.node, "coturn log", coturn.process.log_text)
        broker = netlab.start_mosquitto()
        attach_log(request.node, "lab mosquitto log", broker.process.log_text)
        yield netlab
    finally:
        netlab.close()


@pytest.fixture(name="lab_daemon")
async def lab_daemon_fixture(
    lab: NetLab, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[LabDaemonFactory]:
    daemons: list[LabDaemon] = []

    async def start(
        *,
        ice_servers: Sequence[str],
        secret: str | None = LAB_SECRET,
        webrtc: dict[str, Any] | None = None,
        device: str = "frontdoor",
    ) -> LabDaemon:
        workdir = tmp_path / f"daemon-{len(daemons)}"
        workdir.mkdir()
        secret_file = None
        if secret is not None:
            secret_file = workdir / "turn_secret"
            secret_file.write_text(secret + "\n", encoding="utf-8")
        config = lab_daemon_config(
            lab, ice_servers=ice_servers, secret_file=secret_file, device=device, webrtc=webrtc
        )
        daemon = LabDaemon(lab, config, workdir)
        daemons.append(daemon)
        attach_log(request.node, f"daemon {device} log", daemon.log_text)
        daemon.start()
        await daemon.wait_online(30)
        return daemon

    yield start
    problems = []
    for daemon in daemons:
        if daemon.running:
            with contextlib.suppress(AssertionError, TimeoutError):
                await daemon.wait_status(lambda s: s.get("viewers") == 0, 3)
            rc = await daemon.terminate()
            if rc != 0:
                problems.append(f"daemon exited with {rc} after SIGTERM")
        if "Traceback" in daemon.log_text():
            problems.append("the daemon logged a Traceback (see its log)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
