"""Make docs/images/home-assistant-iframe.png: the peercam dashboard inside Home Assistant.

    .venv/bin/python scripts/ha_screenshot.py [--out docs/images/home-assistant-iframe.png]

Everything real and on 127.0.0.1: ``peercam demo --homeassistant`` (embedded
broker, test-pattern daemon, dashboard), a Home Assistant core from the
cached test venv (``tests/ha_core.py``) whose default dashboard holds a
webpage (iframe) card with the demo's viewer link next to the discovered
entities, and headless Chromium (the Debian package, through Playwright)
signed in to Home Assistant with the tokens of its onboarded owner.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ha_core import HomeAssistant  # noqa: E402
from tests.mosquitto import free_port  # noqa: E402


def lovelace(panel_url: str) -> dict[str, object]:
    cards = [
        {"type": "iframe", "url": panel_url, "aspect_ratio": "115%", "title": "Front door (live)"},
        {"type": "picture-entity", "entity": "image.demo_snapshot", "name": "Last visitor"},
        {
            "type": "entities",
            "title": "peercam demo",
            "entities": [
                "binary_sensor.demo_online",
                "binary_sensor.demo_ringing",
                "sensor.demo_viewers",
                "event.demo_doorbell",
            ],
        },
    ]
    return {
        "version": 1,
        "minor_version": 1,
        "key": "lovelace",
        "data": {"config": {"title": "Home", "views": [{"title": "Door", "cards": cards}]}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs/images/home-assistant-iframe.png"))
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="peercam-ha-shot-") as tmp:
        web_port = free_port()
        demo = subprocess.Popen(
            [
                *(sys.executable, "-m", "peercam", "demo", "--homeassistant"),
                *("--port", str(web_port), "--width", "640", "--height", "360"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ha = HomeAssistant(Path(tmp) / "ha", free_port())
        try:
            broker_port = None
            deadline = time.monotonic() + 60
            assert demo.stdout is not None
            while broker_port is None and time.monotonic() < deadline:
                line = demo.stdout.readline()
                if match := re.search(r"Home Assistant: .* port (\d+)", line):
                    broker_port = int(match.group(1))
            if broker_port is None:
                raise SystemExit("peercam demo did not print its broker")
            storage = ha.config_dir / ".storage"
            storage.mkdir(parents=True, exist_ok=True)
            panel = f"http://127.0.0.1:{web_port}/?device=demo&viewer=hass-panel"
            (storage / "lovelace").write_text(json.dumps(lovelace(panel)))
            ha.start()
            ha.onboard()
            ha.finish_onboarding()
            flow = ha.api("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
            ha.api(
                "POST",
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"broker": "127.0.0.1", "port": broker_port},
            )
            deadline = time.monotonic() + 60
            while (ha.state("event.demo_doorbell") or {}).get("state") != "unknown":
                if time.monotonic() > deadline:
                    raise SystemExit("the demo never appeared in Home Assistant")
                time.sleep(0.5)
            time.sleep(2)
            ring = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/ring", method="POST")
            urllib.request.urlopen(ring, timeout=10).read()  # a snapshot for the image card
            while (ha.state("event.demo_doorbell") or {}).get("state") == "unknown":
                if time.monotonic() > deadline:
                    raise SystemExit("Home Assistant did not see the ring")
                time.sleep(0.2)
            tokens = {
                **ha.tokens,
                "hassUrl": ha.base,
                "clientId": ha.base + "/",
                "expires": int(time.time() * 1000) + 1_800_000,
            }
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    # the demo's viewer offers from the loopback page (demo on 127.0.0.1)
                    # Chromium's default WebRTC behaviour (mDNS names, no loopback), as a
                    # user's: the demo copes with it (issue 20).
                    args=["--no-sandbox"],
                )
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                # Loopback only: the frontend would fetch map tiles, brand icons ...
                page.route(
                    re.compile(r"^(?!https?://127\.0\.0\.1[:/]|wss?://127\.0\.0\.1[:/]).*"),
                    lambda route: route.abort(),
                )
                page.add_init_script(
                    f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))});"
                )
                page.goto(f"{ha.base}/lovelace/0", wait_until="networkidle")
                time.sleep(12)  # the iframe signs in, watches and shows video
                page.screenshot(path=args.out)
                browser.close()
            print(f"written: {args.out}")
        finally:
            ha.stop()
            demo.terminate()
            demo.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
