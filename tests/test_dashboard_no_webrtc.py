"""Browsers that cannot show the video get a sentence a person can act on.

WebKitGTK here has no WebRTC at all and Firefox may lack H.264; both are
reproduced in Chromium by taking the feature away before the page loads
(Safari's real WebRTC cannot be tested on this machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.dashboard_env import (
    broker_fixture,
    chromium_fixture,
    dashboard_url,
    js_card,
    new_page,
    site_fixture,
    start_device,
    wait_js,
)
from tests.mosquitto import MosquittoBroker

__all__ = ["broker_fixture", "chromium_fixture", "site_fixture"]

NO_WEBRTC = "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"
NO_H264 = """
const real = RTCRtpReceiver.getCapabilities.bind(RTCRtpReceiver);
RTCRtpReceiver.getCapabilities = (kind) => {
  const caps = real(kind);
  if (kind === 'video') caps.codecs = caps.codecs.filter((c) => !/h264/i.test(c.mimeType));
  return caps;
};
"""


async def test_no_webrtc_and_no_h264_are_explained(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await start_device(daemon_factory, broker, tmp_path)
    for script, needle in (
        (NO_WEBRTC, "it has no WebRTC. Open this page in a current Chrome"),
        (NO_H264, "cannot play this camera's H.264 video over WebRTC"),
    ):
        page, log = await new_page(chromium)
        await page.add_init_script(script)
        await page.goto(dashboard_url(site, broker, "alice"))
        text = await wait_js(
            page,
            js_card("frontdoor", f"c.innerText.includes({needle!r}) && c.innerText"),
            20,
            needle,
        )
        assert "SDP" not in text and "profile-level-id" not in text
        assert log.unexpected() == []
        await page.context.close()
    # The page never offered: no session reached the device.
    assert "answered" not in daemon.log_text()
