"""A browser as people run it watches the device: mDNS host names, no loopback, no multicast.

Chromium runs with its default WebRTC behaviour (``launch_chromium(default_webrtc=True)``:
only flags that keep it quiet) inside the viewer namespace of a ``LanLab``,
the daemon inside the device namespace, Mosquitto on the router.  Multicast
is dropped in both namespaces (iptables), so nobody can resolve the
browser's ``….local`` host candidate: the only way in is the browser's own
checks to the device's LAN address, which the device must answer and learn
as a peer-reflexive candidate.  The dashboard is served to Chromium by
Playwright's request interception from ``http://localhost:8480`` (a secure
context, as the demo's page is), so no server runs outside the namespaces.
"""

from __future__ import annotations

import json
import mimetypes
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import attach_log
from tests.dashboard_env import DASHBOARD, shot, wait_frames, wait_js, watch_console
from tests.lanlab import LAN_DEVICE_IP, LanLab, lan_daemon_webrtc
from tests.netlab import LabDaemon, lab_daemon_config, remove_stale
from tests.netlab_fixtures import needs_lab

pytestmark = [needs_lab, pytest.mark.browser]

ORIGIN = "http://localhost:8480"
#: Counts the page's getUserMedia calls (watching must never ask for the microphone)
#: and keeps its peer connections (for their selected pair and offer).
INIT = """
(() => {
  window.__gum = 0;
  window.__pcs = [];
  const RealPC = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new RealPC(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = RealPC.prototype;
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const real = md.getUserMedia.bind(md);
    md.getUserMedia = (c) => { window.__gum += 1; return real(c); };
  }
})();
"""


@pytest.fixture(name="lan")
def lan_fixture(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LanLab]:
    remove_stale()
    lab = LanLab(tmp_path / "lan")
    try:
        lab.build()
        if "multicast-open" not in request.node.name:
            lab.block_multicast()
        broker = lab.start_mosquitto()
        attach_log(request.node, "lan mosquitto log", broker.process.log_text)
        yield lab
    finally:
        lab.close()


@pytest.fixture(name="lan_daemon")
async def lan_daemon_fixture(
    lan: LanLab, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    daemons: list[LabDaemon] = []

    async def start(*, fake_hardware: bool = False, **webrtc: Any) -> LabDaemon:
        workdir = tmp_path / f"daemon-{len(daemons)}"
        config = lab_daemon_config(
            lan, ice_servers=[], secret_file=None, webrtc=lan_daemon_webrtc(**webrtc)
        )
        daemon = LabDaemon(lan, config, workdir)
        daemon.extra_args.append("-vv")  # aioice's own log too: checks, prflx, mDNS
        if fake_hardware:
            daemon.extra_args.append("--fake-hardware")
        daemons.append(daemon)
        attach_log(request.node, "daemon log", daemon.log_text)
        daemon.start()
        await daemon.wait_online(30)
        return daemon

    yield start
    for daemon in daemons:
        if daemon.running:
            rc = await daemon.terminate()
            assert rc == 0, f"the daemon exited with {rc} after SIGTERM"
        daemon.assert_no_traceback()


async def serve_dashboard(route: Any) -> None:
    path = route.request.url.removeprefix(ORIGIN).split("?", 1)[0].split("#", 1)[0]
    if path in ("", "/"):
        path = "/index.html"
    file = (DASHBOARD / path.lstrip("/")).resolve()
    if DASHBOARD.resolve() not in file.parents or not file.is_file():
        await route.fulfill(status=404, body="not in the dashboard")
        return
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if file.suffix == ".js":
        kind = "text/javascript"
    await route.fulfill(body=file.read_bytes(), content_type=kind)


def page_url(lan: LanLab, viewer: str = "alice") -> str:
    from urllib.parse import urlencode

    assert lan.broker is not None
    params = {"broker_url": lan.broker.ws_url, "viewer": viewer, "password": "pw", "signin": "1"}
    return f"{ORIGIN}/?{urlencode(params)}"


async def open_dashboard(browser: Any, lan: LanLab) -> tuple[Any, Any]:
    context = await browser.new_context()
    page = await context.new_page()
    log = watch_console(page)
    await page.add_init_script(INIT)
    await page.route(f"{ORIGIN}/**", serve_dashboard)
    await page.goto(page_url(lan))
    return page, log


async def selected_pair(page: Any) -> dict[str, Any]:
    """The selected candidate pair of the page's newest peer connection."""
    return await page.evaluate(
        """async () => {
          const pc = window.__pcs[window.__pcs.length - 1];
          const stats = await pc.getStats();
          let pairId = null;
          stats.forEach((r) => { if (r.type === 'transport') pairId = r.selectedCandidatePairId; });
          const pair = pairId && stats.get(pairId);
          if (!pair) return null;
          const l = stats.get(pair.localCandidateId), r = stats.get(pair.remoteCandidateId);
          return {local: l.candidateType, localAddress: l.address,
                  remote: r.candidateType, remoteAddress: r.address};
        }"""
    )


@pytest.mark.parametrize("start", ["prompt", "first-checks-lost", "multicast-open"])
async def test_default_chromium_watches_a_device_on_a_lan_without_multicast(
    lan: LanLab, lan_daemon: Any, start: str
) -> None:
    from playwright.async_api import async_playwright

    from tests.browser import launch_chromium

    if start == "first-checks-lost":
        lan.lose_first_checks()
    daemon = await lan_daemon()
    async with async_playwright() as pw:
        browser = await launch_chromium(
            pw, executable_path=str(lan.chromium_in("view")), default_webrtc=True
        )
        try:
            page, log = await open_dashboard(browser, lan)
            try:
                frames = await wait_frames(page, "frontdoor", 30, 40)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nconsole: {log.messages[-20:]}") from None
            pair = await selected_pair(page)
            offer = await page.evaluate(
                "() => window.__pcs[window.__pcs.length - 1].localDescription.sdp"
            )
            gum = await page.evaluate("() => window.__gum")
            await page.screenshot(path=shot("default-browser-live.png"))
        finally:
            await browser.close()
    assert frames >= 30
    # The browser offered what people's browsers offer: an mDNS name, no address.
    hosts = [line.split()[4] for line in offer.splitlines() if line.startswith("a=candidate:")]
    assert hosts and all(h.endswith(".local") for h in hosts), hosts
    assert pair is not None and pair["remoteAddress"] == LAN_DEVICE_IP, pair
    assert gum == 0, "the dashboard asked for the microphone just to watch"
    text = daemon.log_text()
    if start == "multicast-open":
        # Where multicast works the device asks for the browser's name (this
        # Chromium binds 224.0.0.251:5353 but never answers a query, checked with
        # a raw one, so the answer cannot be asserted) and connects either way.
        assert re.search(r"the viewer's mDNS name \S+\.local (is|was not)", text), text
        assert lan.multicast_drops() == 0
    else:
        # It cannot (multicast dropped): it learned the browser from its checks.
        assert "⇄ prflx 10.3.0.3" in text, text[-3000:]
        assert lan.multicast_drops() > 0, "nobody tried mDNS: the test proves nothing"
    # The first session connected: the device did not give up before the
    # browser's checks arrived (it used to fail 20 ms after its answer).
    assert text.count(": answered (") == 1, text[-3000:]
    assert "ICE/DTLS failed" not in text and "not connected after" not in text, text[-3000:]
    assert not log.unexpected(), log.errors


async def test_default_chromium_answers_a_call_without_microphone_permission(
    lan: LanLab, lan_daemon: Any
) -> None:
    from playwright.async_api import async_playwright

    from tests.browser import launch_chromium

    daemon = await lan_daemon(fake_hardware=True)
    async with async_playwright() as pw:
        browser = await launch_chromium(
            pw, executable_path=str(lan.chromium_in("view")), default_webrtc=True
        )
        try:
            page, log = await open_dashboard(browser, lan)
            await wait_frames(page, "frontdoor", 5, 40)
            daemon.signal(signal.SIGUSR1)  # the fake hardware's call button
            await wait_js(page, "() => document.getElementById('ring-dialog').open", 15)
            call = await page.evaluate("window.peercam.ringing[0].call")
            await page.click("#ring-answer")
            # The microphone is not granted (no prompt is ever accepted here): the
            # call is answered without talkback, over a new session, with video.
            await wait_js(
                page,
                f"() => {{ const s = window.peercam.sessions.frontdoor;"
                f" return s.call === {json.dumps(call)} && s.state === 'live'"
                f" && s.stats.framesDecoded >= 30; }}",
                40,
                "the answered call shows video",
            )
            pair = await selected_pair(page)
            await page.screenshot(path=shot("default-browser-call.png"))
        finally:
            await browser.close()
    assert pair is not None and pair["remoteAddress"] == LAN_DEVICE_IP, pair
    await daemon.wait_status(lambda s: s.get("call") is None, 20)
    assert "answered" in daemon.log_text()
    assert not log.unexpected(["microphone"]), log.errors


async def test_with_no_path_the_dashboard_and_the_log_say_what_to_do(
    lan: LanLab, lan_daemon: Any
) -> None:
    """Wi-Fi client isolation: nothing passes between the viewer and the device."""
    from playwright.async_api import async_playwright

    from tests.browser import launch_chromium

    lan.isolate_clients()
    daemon = await lan_daemon(connect_timeout=3.0)
    async with async_playwright() as pw:
        browser = await launch_chromium(
            pw, executable_path=str(lan.chromium_in("view")), default_webrtc=True
        )
        try:
            page, log = await open_dashboard(browser, lan)
            message = await wait_js(
                page,
                "() => { const s = window.peercam.sessions.frontdoor;"
                " return s && s.state === 'retrying' && s.message; }",
                30,
                "the session gives up and says why",
            )
            await page.screenshot(path=shot("default-browser-no-path.png"))
            advice = await page.evaluate(
                """async () => {
                  const a = await import('./ice-advice.js');
                  const sdp = (addr, typ) =>
                    `v=0\\r\\na=candidate:1 1 udp 1 ${addr} 4000 typ ${typ}\\r\\n`;
                  return {
                    loopbackElsewhere: a.noPathAdvice(sdp('127.0.0.1', 'host'), 'pi.lan'),
                    loopbackHere: a.noPathAdvice(sdp('127.0.0.1', 'host'), '127.0.0.1'),
                    relay: a.noPathAdvice(sdp('203.0.113.9', 'relay'), 'pi.lan'),
                    nothing: a.noPathAdvice('v=0\\r\\n', 'pi.lan'),
                  };
                }"""
            )
        finally:
            await browser.close()
    # The tile says what is wrong and what helps, not just "failed".
    assert f"could not reach {LAN_DEVICE_IP}" in message, message
    assert "isolation" in message and "TURN" in message, message
    # The device's log names its candidates, the viewer's unresolved name, the
    # checks it saw (none) and the likely cause.
    text = daemon.log_text()
    line = next(x for x in text.splitlines() if "not connected after" in x)
    assert f"device offered host {LAN_DEVICE_IP}:" in line, line
    assert ".local (mDNS, not resolved)" in line, line
    assert "checks from the viewer: none" in line, line
    assert "No check from the viewer reached the device" in line, line
    assert "multicast does not work" in line, line
    assert "only its own machine can reach" in advice["loopbackElsewhere"], advice
    assert "does not use for video" in advice["loopbackHere"], advice
    assert "TURN relay (203.0.113.9)" in advice["relay"], advice
    assert "offered no address" in advice["nothing"], advice
    assert not log.unexpected(), log.errors
