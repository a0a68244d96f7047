"""Through NAT for real: network namespaces, iptables NAT, real coturn and Mosquitto.

The daemon runs behind NAT A, the Python viewer behind NAT B (tests/netlab.py).
Each case prints the selected candidate pair as both ends see it and the
viewer's time to first frame (hello → first decoded frame); timings are
printed, never asserted.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import to_toml
from tests.netlab import (
    ALL_URLS,
    BLACKHOLE_IP,
    STUN,
    TURN_TCP,
    TURN_UDP,
    TURNS,
    LabDaemon,
    Nat,
    NetLab,
    device_path,
    lab_daemon_config,
    run_in_namespace,
    run_lab_viewer,
)
from tests.netlab_fixtures import (  # noqa: F401 - fixtures
    LAB_SECRET,
    LabDaemonFactory,
    lab_daemon_fixture,
    lab_fixture,
    needs_lab,
)

pytestmark = needs_lab


def report(case: str, viewer: dict[str, Any], daemon: LabDaemon | None) -> None:
    pair = viewer.get("pair") or {}
    device = device_path(daemon) if daemon is not None and viewer.get("ok") else ("?", "?")
    ttff = viewer.get("time_to_first_frame")
    line = (
        f"\n[nat] {case}: viewer {pair.get('local_type')} ⇄ {pair.get('remote_type')}, "
        f"device {device[0]} ⇄ {device[1]}, "
        f"time to first frame {'-' if ttff is None else f'{ttff * 1000:.0f} ms'}, "
        f"offer→answer {viewer.get('offer_to_answer', 0) * 1000:.0f} ms, "
        f"viewer gathering {viewer.get('viewer_gathering', 0) * 1000:.0f} ms, "
        f"frames {viewer.get('frames')}"
    )
    print(line, file=sys.stderr)


def assert_watched(viewer: dict[str, Any]) -> None:
    assert viewer["ok"], f"the viewer saw no video: {viewer.get('error')}\n{viewer['log']}"
    assert viewer["frames"] >= 10


async def test_full_cone_nats_with_stun_connect_directly(
    lab: NetLab, lab_daemon: LabDaemonFactory
) -> None:
    lab.set_nat("a", Nat.FULL_CONE)
    lab.set_nat("b", Nat.FULL_CONE)
    daemon = await lab_daemon(ice_servers=ALL_URLS)
    viewer = await run_lab_viewer(lab, "--turn", "udp")
    report("full-cone both sides", viewer, daemon)
    assert_watched(viewer)
    pair = viewer["pair"]
    assert "relay" not in (pair["local_type"], pair["remote_type"]), pair
    assert "relay" not in device_path(daemon)
    # The device did have a relay to fall back on: direct won on merit.
    assert "relay" in viewer["local_candidates"]


@pytest.mark.parametrize("network", ["symmetric", "udp-between-nats-blocked"], ids=lambda n: n)
async def test_no_direct_path_goes_through_turn(
    lab: NetLab, lab_daemon: LabDaemonFactory, network: str
) -> None:
    if network == "symmetric":
        lab.set_nat("a", Nat.SYMMETRIC)
        lab.set_nat("b", Nat.SYMMETRIC)
    else:
        lab.set_nat("a", Nat.FULL_CONE)
        lab.set_nat("b", Nat.FULL_CONE)
        lab.block_udp_between_routers()
    daemon = await lab_daemon(ice_servers=ALL_URLS)
    viewer = await run_lab_viewer(lab, "--turn", "udp")
    report(network, viewer, daemon)
    assert_watched(viewer)
    pair = viewer["pair"]
    assert "relay" in (pair["local_type"], pair["remote_type"]), pair
    assert "relay" in device_path(daemon)


def ice_faults(status: dict[str, Any]) -> list[str]:
    return [f for f in status.get("faults", []) if f.startswith("ICE server")]


@pytest.mark.parametrize("turn", ["tcp", "tls"])
async def test_udp_blocked_entirely_uses_turn_over_tcp_or_tls(
    lab: NetLab, lab_daemon: LabDaemonFactory, turn: str
) -> None:
    lab.set_nat("a", Nat.PORT_RESTRICTED, block_udp=True)
    lab.set_nat("b", Nat.PORT_RESTRICTED, block_udp=True)
    device_turn = TURN_TCP if turn == "tcp" else TURNS
    daemon = await lab_daemon(ice_servers=[STUN, TURN_UDP, device_turn])
    # The device finds out that STUN and TURN over UDP do not answer, says so,
    # and uses TURN over TCP/TLS instead.
    status = await daemon.wait_status(lambda s: len(ice_faults(s)) == 2, 20)
    faults = ice_faults(status)
    assert any(STUN in f and "no answer" in f for f in faults), faults
    assert any(TURN_UDP in f and "no answer" in f for f in faults), faults
    assert f"the device's own ICE uses {device_turn}" in daemon.log_text()
    # A browser trickles and never waits for a dead STUN server; aiortc would
    # (5 s), so this viewer leaves STUN out to measure the path, not that wait.
    viewer = await run_lab_viewer(lab, "--turn", turn, "--no-stun")
    report(f"UDP blocked, TURN over {turn.upper()}", viewer, daemon)
    assert_watched(viewer)
    assert viewer["pair"]["local_type"] == "relay"
    assert device_path(daemon)[0] == "relay"


async def test_unreachable_turn_server_does_not_slow_answers(
    lab: NetLab, lab_daemon: LabDaemonFactory
) -> None:
    lab.set_nat("a", Nat.SYMMETRIC)
    lab.set_nat("b", Nat.SYMMETRIC)
    dead = f"turn:{BLACKHOLE_IP}:3478?transport=udp"
    daemon = await lab_daemon(ice_servers=[STUN, dead, TURN_TCP])
    status = await daemon.wait_status(lambda s: bool(ice_faults(s)), 20)
    assert [f for f in ice_faults(status) if dead in f and "no answer" in f], status
    log = daemon.log_text()
    assert f"ICE server {dead} is down" in log
    assert f"the device's own ICE uses {STUN}, {TURN_TCP}" in log
    answers = []
    for _ in range(2):
        viewer = await run_lab_viewer(lab, "--turn", "tcp")
        report("unreachable TURN configured (fallback TURN/TCP)", viewer, daemon)
        assert_watched(viewer)
        assert "relay" in device_path(daemon)
        answers.append(viewer["offer_to_answer"])
    print(f"\n[nat] offer→answer with a dead TURN server configured: "
          f"{', '.join(f'{a * 1000:.0f} ms' for a in answers)}", file=sys.stderr)  # fmt: skip


async def test_wrong_turn_secret_is_reported_and_sessions_end(
    lab: NetLab, lab_daemon: LabDaemonFactory
) -> None:
    lab.set_nat("a", Nat.SYMMETRIC)
    lab.set_nat("b", Nat.SYMMETRIC)
    daemon = await lab_daemon(
        ice_servers=[STUN, TURN_UDP], secret="not-the-secret", webrtc={"connect_timeout": 6.0}
    )
    status = await daemon.wait_status(lambda s: bool(ice_faults(s)), 20)
    (fault,) = ice_faults(status)
    assert TURN_UDP in fault and "401" in fault and "static-auth-secret" in fault, fault
    # Its viewers' credentials are minted with the same wrong secret: with
    # symmetric NATs and no relay, no path exists; the session must end (bye
    # failed) within connect_timeout, not hang (the lab viewer waits for it 20 s at most).
    viewer = await run_lab_viewer(lab, "--turn", "udp", "--expect-failure", timeout=20)
    print(f"\n[nat] wrong TURN secret: offer→answer {viewer['offer_to_answer'] * 1000:.0f} ms, "
          f"bye {viewer['bye']} after {viewer['ended_after']:.1f} s "
          f"(viewer candidates {viewer['local_candidates']})", file=sys.stderr)  # fmt: skip
    assert viewer["bye"] is not None, viewer
    assert viewer["bye"].get("reason") == "failed"
    assert viewer["frames"] == 0
    assert "relay" not in viewer["local_candidates"]


async def peercam_check(lab: NetLab, config: dict[str, Any], workdir: Path) -> tuple[int, str]:
    path = workdir / "check.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    argv = [sys.executable, "-m", "peercam", "check", "--config", str(path)]
    return await run_in_namespace(lab.device, argv, env=lab.env(), timeout=60)


async def test_peercam_check_allocates_on_the_turn_server(lab: NetLab, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(LAB_SECRET, encoding="utf-8")
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-secret", encoding="utf-8")
    dead = f"turn:{BLACKHOLE_IP}:3478?transport=udp"
    config = lab_daemon_config(lab, ice_servers=ALL_URLS, secret_file=secret)

    rc, out = await peercam_check(lab, config, tmp_path)
    print(f"\n[check] right secret:\n{out}", file=sys.stderr)
    assert rc == 0, out
    for url in ALL_URLS:
        assert re.search(rf"\[ok\] {re.escape(url)}: ", out), (url, out)
    assert "relay 198.18.0.1:" in out and "over TLS" in out
    assert f"the device would use {STUN} and {TURN_UDP}" in out
    assert "relays to the private address" not in out  # the docs' denied-peer-ip works

    config = lab_daemon_config(lab, ice_servers=ALL_URLS, secret_file=wrong)
    rc, out = await peercam_check(lab, config, tmp_path)
    print(f"\n[check] wrong secret:\n{out}", file=sys.stderr)
    assert rc == 1
    assert re.search(rf"\[ok\] {re.escape(STUN)}: mapped address", out), out
    for url in (TURN_UDP, TURN_TCP, TURNS):
        assert re.search(rf"\[FAIL\] {re.escape(url)}: 401 .*static-auth-secret.*{wrong}", out), (
            url,
            out,
        )

    lab.stop_coturn()
    config = lab_daemon_config(lab, ice_servers=[*ALL_URLS, dead], secret_file=secret)
    rc, out = await peercam_check(lab, config, tmp_path)
    print(f"\n[check] coturn down:\n{out}", file=sys.stderr)
    assert rc == 1
    assert re.search(rf"\[FAIL\] {re.escape(TURN_UDP)}: ICMP port unreachable", out), out
    assert re.search(rf"\[FAIL\] {re.escape(TURN_TCP)}: connection refused", out), out
    assert re.search(rf"\[FAIL\] {re.escape(TURNS)}: connection refused", out), out
    assert re.search(rf"\[FAIL\] {re.escape(dead)}: no answer .* within", out), out
    assert "5 check(s) failed" in out, out


async def test_expired_credentials_are_named_as_such(lab: NetLab) -> None:
    code = f"""
import asyncio, time
from peercam.turn import mint
from peercam.turn_probe import probe_turn
old = mint({LAB_SECRET!r}, "frontdoor", 600, now=time.time() - 3600)
fresh = mint({LAB_SECRET!r}, "frontdoor", 600)
async def main():
    for creds in (old, fresh):
        r = await probe_turn({TURN_UDP!r}, creds.username, creds.credential, peer="10.2.0.2")
        print(r.ok, r.failure, r.detail, "|", r.peer_detail)
asyncio.run(main())
"""
    _, out = await run_in_namespace(
        lab.device, [sys.executable, "-c", code], env=lab.env(), timeout=30
    )
    print(f"\n[probe] {out}", file=sys.stderr)
    expired, fresh = out.strip().splitlines()[-2:]
    assert expired.startswith("False auth 401") and "expired at" in expired, out
    assert fresh.startswith("True None relay 198.18.0.1:"), out
    assert "refuses to relay to 10.2.0.2 (403" in fresh, out
