"""[relay] mode = "janus" for real: Debian's Janus, the daemon, and viewers in lab namespaces.

Janus runs in a namespace of its own on the lab's "internet" (tests/janus_lab.py),
the daemon behind NAT A, viewers behind NAT B; Janus's config is what
``peercam provision export`` writes.  Timings are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import attach_log
from tests.janus_lab import JANUS_URL, JanusServer, add_sfu_namespace, janus_unavailable
from tests.netlab import (
    VIEWER_NET,
    LabDaemon,
    NetLab,
    lab_daemon_config,
    remove_stale,
    run_in_namespace,
)
from tests.netlab_fixtures import UNAVAILABLE

pytestmark = [
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
    pytest.mark.skipif(janus_unavailable() is not None, reason=janus_unavailable() or ""),
]


@pytest.fixture(name="lab")
def lab_fixture(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NetLab]:
    remove_stale()
    netlab = NetLab(tmp_path / "lab")
    try:
        netlab.build()
        add_sfu_namespace(netlab)
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

    async def start(**relay: Any) -> LabDaemon:
        workdir = tmp_path / f"daemon-{len(daemons)}"
        workdir.mkdir()
        config = lab_daemon_config(lab, ice_servers=[], secret_file=None)
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


async def janus_viewer(lab: NetLab, *args: str, timeout: float = 20.0) -> dict[str, Any]:
    """tests/janus_viewer.py in the viewer namespace; its summary (last JSON line)."""
    import json

    assert lab.broker is not None
    argv = [
        sys.executable, "-m", "tests.janus_viewer", "--broker", lab.broker.url,
        "--host-network", VIEWER_NET, "--timeout", str(timeout), *args,
    ]  # fmt: skip
    rc, out = await run_in_namespace(lab.viewer, argv, env=lab.env(), timeout=timeout * 6 + 10)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        raise AssertionError(f"the Janus viewer failed (exit {rc}):\n{out}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["log"] = out
    return result


def report(case: str, result: dict[str, Any]) -> None:
    firsts = [s.get("subscribe_to_first_frame") for s in result.get("subscriptions", [])]
    shown = ", ".join("-" if f is None else f"{f * 1000:.0f} ms" for f in firsts)
    print(f"\n[relay] {case}: path {result.get('path')}, subscribe→first frame {shown}",
          file=sys.stderr)  # fmt: skip


async def test_device_publishes_and_a_viewer_decodes_through_janus(
    lab: NetLab, janus: JanusServer, relay_daemon: RelayDaemonFactory
) -> None:
    janus.start()
    daemon = await relay_daemon(policy="always")
    status = await daemon.wait_status(lambda s: s.get("relay", {}).get("state") == "idle", 10)
    assert status["relay"]["feed"] is None  # on demand: nothing is sent before a viewer
    result = await janus_viewer(lab, "--frames", "15")
    report("policy always", result)
    assert result["ok"], f"{result.get('error')}\n{result['log']}"
    assert result["path"] == "relay"
    assert result["welcome_relay"]["url"] == JANUS_URL
    assert result["welcome_relay"]["room"] == 4242
    assert result["subscriptions"][0]["frames"] >= 15
    assert "publishing to Janus" in daemon.log_text()
    # The viewer said bye: its lease is gone and, after the linger, so is the publish.
    await daemon.wait_status(lambda s: s["relay"]["viewers"] == 0, 10)
    with contextlib.suppress(AssertionError):
        pass
