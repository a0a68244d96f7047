"""Time to first frame for Chromium as people run it vs the test suite's flagged Chromium.

    sudo .venv/bin/python -m bench.default_browser [--runs 15] [--size 640x480]
        [--modes default,flagged] [--offers gathered,trickle] [--multicast blocked|open]

A home LAN in network namespaces (``tests.lanlab.LanLab``, needs root): the
daemon on 10.3.0.2, Chromium on 10.3.0.3, Mosquitto on the router; multicast
dropped in both namespaces by default (``--multicast open`` lets mDNS work).

- ``default``: Chromium with its default WebRTC behaviour (``tests.browser``
  ``default_webrtc=True``): its host candidate is a ``….local`` name the
  device cannot resolve, so the device learns the browser from its checks
  (peer-reflexive);
- ``flagged``: with ``--disable-features=WebRtcHideLocalIpsWithMdns
  --allow-loopback-in-peer-connection``, as the loopback tests run it: real
  addresses, host ⇄ host.

The viewer is ``bench/web/viewer.js`` (first frame = first
``requestVideoFrameCallback``), served by Playwright's request interception;
``gathered`` sends the offer once ICE gathering completed (at most 2 s),
``trickle`` at once with the candidates after it.  Each run is a fresh
session after a random 0.2-0.8 s pause; the camera keeps running between
runs; one uncounted warm-up run per case.  Prints hello → first frame and
offer → answer, and the device's pairs; writes
``bench/results/default_browser.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.chromium import FILES
from bench.harness import machine, run_bench, stats, summary, write_result
from tests.browser import launch_chromium
from tests.lanlab import LanLab, lan_daemon_webrtc
from tests.netlab import LabDaemon, lab_daemon_config, remove_stale, unavailable_reason

ORIGIN = "http://localhost:8481"
_PAIR = re.compile(r"connected in \d+ ms \((\w+) \S+ ⇄ (\w+) \S+\)")


async def _serve(route: Any) -> None:
    found = FILES.get(route.request.url.removeprefix(ORIGIN).split("?", 1)[0])
    if found is None:
        await route.fulfill(status=404, body="not here")
    else:
        await route.fulfill(body=found[0].read_bytes(), content_type=found[1])


async def measure(
    lab: LanLab, daemon: LabDaemon, mode: str, offer: str, runs: int
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    assert lab.broker is not None
    before = len(_PAIR.findall(daemon.log_text()))
    offset = len(daemon.log_text())
    data: dict[str, list[float]] = {"hello_ms": [], "offer_ms": [], "answer_ms": []}
    errors: list[str] = []
    failures: list[str] = []
    async with async_playwright() as pw:
        browser = await launch_chromium(
            pw,
            executable_path=str(lab.chromium_in("view")),
            default_webrtc=mode == "default",
            extra_args=["--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.route(f"{ORIGIN}/**", _serve)
            trickle = int(offer == "trickle")
            await page.goto(
                f"{ORIGIN}/viewer.html?broker={lab.broker.ws_url}&device=frontdoor"
                f"&viewer=bench-{mode}-{offer}&trickle={trickle}"
            )
            await page.evaluate("bench.connect()")
            for i in range(runs + 1):
                try:
                    result = await page.evaluate("bench.watch()")
                except Exception as exc:  # no frame: the session failed
                    failures.append(str(exc).splitlines()[0][:200])
                    await page.evaluate("bench.bye()")
                    await asyncio.sleep(random.uniform(0.2, 0.8))
                    continue
                if i > 0:
                    data["hello_ms"].append(result["helloMs"])
                    data["offer_ms"].append(result["offerMs"])
                    data["answer_ms"].append(result["answerMs"])
                await page.evaluate("bench.bye()")
                await asyncio.sleep(random.uniform(0.2, 0.8))
        finally:
            await browser.close()
    pairs = collections.Counter(
        f"{local} ⇄ {remote}" for local, remote in _PAIR.findall(daemon.log_text())[before:]
    )
    failed = len(re.findall(r"ICE/DTLS failed|not connected after", daemon.log_text()[offset:]))
    return {
        "data": data,
        "device_pairs": dict(pairs),
        "failed_runs": len(failures),
        "device_failures": failed,
        "errors": (failures + errors)[:3],
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    width, height = (int(x) for x in args.size.split("x"))
    remove_stale()
    workdir = Path(tempfile.mkdtemp(prefix="peercam-bench-lan-"))
    lab = LanLab(workdir / "lan")
    rows: list[dict[str, Any]] = []
    daemon: LabDaemon | None = None
    try:
        lab.build()
        if args.multicast == "blocked":
            lab.block_multicast()
        lab.start_mosquitto()
        config = lab_daemon_config(
            lab, ice_servers=[], secret_file=None, webrtc=lan_daemon_webrtc()
        )
        config["camera"].update({"width": width, "height": height})
        daemon = LabDaemon(lab, config, workdir / "daemon")
        daemon.start()
        await daemon.wait_online(30)
        for mode in args.modes.split(","):
            for offer in args.offers.split(","):
                result = await measure(lab, daemon, mode, offer, args.runs)
                data = result["data"]
                rows.append(
                    {
                        "mode": mode,
                        "offer": offer,
                        "multicast": args.multicast,
                        "device_pairs": result["device_pairs"],
                        "failed_runs": result["failed_runs"],
                        "device_failures": result["device_failures"],
                        **{f"{k}_stats": stats(v) for k, v in data.items()},
                        **data,
                    }
                )
                print(f"{mode} Chromium, offer {offer}, multicast {args.multicast}:", flush=True)
                print(f"  hello -> first frame: {summary(data['hello_ms'])}", flush=True)
                print(f"  offer -> answer:      {summary(data['answer_ms'])}", flush=True)
                print(
                    f"  device pairs: {result['device_pairs']}; runs without a frame: "
                    f"{result['failed_runs']}; sessions the device failed: "
                    f"{result['device_failures']}",
                    flush=True,
                )
                if result["errors"]:
                    print(f"  page errors: {result['errors']}", flush=True)
    finally:
        if daemon is not None and daemon.running:
            await daemon.terminate()
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--modes", default="default,flagged", help="default, flagged")
    parser.add_argument("--offers", default="gathered,trickle", help="gathered, trickle")
    parser.add_argument("--multicast", choices=("blocked", "open"), default="blocked")
    parser.add_argument("--json", help="write here instead of bench/results/default_browser.json")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"bench.default_browser: {reason}", file=sys.stderr)
        raise SystemExit(2)
    print(f"machine: {machine()}", flush=True)
    rows = run_bench(run(args))
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    path = write_result("default_browser", {"settings": settings, "rows": rows}, args.json)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
