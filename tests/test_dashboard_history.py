"""Event history in the dashboard: the real daemon (``--fake-hardware``, SIGUSR1 rings)
records a clip of a ring nobody answers; Chromium lists it with its thumbnail, plays it
in the large view over WebRTC (frames decoded, duration right), downloads the MP4 over
the data channel and deletes it, while a second viewer's live picture goes on."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import av
import pytest

from tests.dashboard_env import (  # noqa: F401 - fixtures
    broker_fixture,
    chromium_fixture,
    dashboard_url,
    image_loaded,
    new_page,
    shot,
    site_fixture,
    start_device,
    wait_frames,
    wait_js,
    wait_more_frames,
    watching_page,
)
from tests.mosquitto import MosquittoBroker

pytestmark = pytest.mark.browser

FPS = 30


def history_of(expression: str) -> str:
    return f"() => {{ const h = window.peercam.history; return {expression}; }}"


async def test_history_plays_downloads_and_deletes_a_missed_ring_while_live_goes_on(
    daemon_factory: Any, broker: MosquittoBroker, site: str, chromium: Any, tmp_path: Path
) -> None:
    clips = tmp_path / "clips"
    daemon = await start_device(
        daemon_factory,
        broker,
        tmp_path,
        extra_args=["--fake-hardware"],
        camera={"keyframe_interval": FPS},
        call={"ring_timeout": 2},
        recording={
            "enabled": True,
            "dir": str(clips),
            "preroll": 2,
            "postroll": 2,
            "deleters": ["alice"],
        },
    )
    bob, bob_log = await watching_page(chromium, site, broker, "bob")
    alice, alice_log = await new_page(chromium)
    alice.on("dialog", lambda dialog: dialog.accept())  # "Delete this clip?"
    await alice.goto(dashboard_url(site, broker, "alice") + "#/device/frontdoor")
    await wait_frames(alice, "frontdoor", 5, 30)
    await wait_js(alice, "() => !document.getElementById('dv-clips-section').hidden", 20)

    daemon.signal(signal.SIGUSR1)  # a visitor rings; nobody answers
    missed = "(h.clips.frontdoor || []).length === 1 && h.clips.frontdoor[0].reason === 'missed'"
    await wait_js(alice, history_of(missed), 30, "the missed ring's clip listed")
    entry = await alice.evaluate(history_of("h.clips.frontdoor[0]"))
    assert entry["reason"] == "missed" and entry["duration"] >= 4
    clip_id = entry["id"]
    await wait_js(alice, image_loaded(f'.clip[data-clip="{clip_id}"] img.clip-thumb'), 20)
    await wait_js(alice, "() => !document.getElementById('ring-dialog').open", 20)

    # play it in the large view
    bob_frames = await wait_more_frames(bob, "frontdoor", 1, 10)
    await alice.click(f'.clip-play[data-clip="{clip_id}"]')
    await wait_js(alice, history_of("h.playback && h.playback.channelOpen"), 20, "channel open")
    await wait_js(
        alice,
        "() => document.getElementById('dv-playback-text').textContent.includes('ended')",
        40,
        "the clip played to its end",
    )
    playback = await alice.evaluate(history_of("h.playback"))
    assert playback["state"] == "ended", playback
    assert playback["duration"] == pytest.approx(entry["duration"], abs=0.05)
    # at the recorded pace: first frame to the end takes about the clip's length
    # (the stats poll every 0.5 s, so the first frame is seen up to 0.5 s late)
    assert playback["playedMs"] >= (entry["duration"] - 1.0) * 1000, playback
    # the clip's frames decoded: all of them normally; 10 % slack for a loaded CI machine
    # (stats are read every 0.5 s and a few frames may still be in flight at "ended")
    with av.open(str(clips / f"{clip_id}.mp4")) as container:
        expected = sum(1 for p in container.demux(video=0) if p.size)
    decoded = await wait_js(
        alice,
        history_of(
            f"h.playback.framesDecoded >= {int(expected * 0.9)} && h.playback.framesDecoded"
        ),
        10,
        f"about {expected} frames decoded",
    )
    assert decoded <= entry["duration"] * FPS + 3
    await alice.screenshot(path=shot("history-playback.png"), full_page=True)

    # download it: the MP4's exact bytes
    async with alice.expect_download(timeout=30_000) as info:
        await alice.click("#dv-playback-download")
    download = await info.value
    saved = tmp_path / "download.mp4"
    await download.save_as(saved)
    assert saved.read_bytes() == (clips / f"{clip_id}.mp4").read_bytes()
    assert download.suggested_filename == f"frontdoor-{clip_id}.mp4"

    # the other viewer watched live all along
    await wait_more_frames(bob, "frontdoor", 30, 20)
    assert await bob.evaluate("() => window.peercam.sessions.frontdoor.state") == "live"
    assert bob_frames < await bob.evaluate(
        "() => window.peercam.sessions.frontdoor.stats.framesDecoded"
    )

    # live one click away
    await alice.click("#dv-playback-live")
    await wait_js(alice, history_of("h.playback === null"), 10)
    await wait_more_frames(alice, "frontdoor", 10, 20)
    assert await alice.evaluate("() => document.getElementById('dv-video').srcObject !== null")

    # delete (alice is in [recording] deleters)
    await alice.click(f'.clip-delete[data-clip="{clip_id}"]')
    await wait_js(alice, history_of("(h.clips.frontdoor || []).length === 0"), 20, "deleted")
    assert not (clips / f"{clip_id}.mp4").exists()
    assert alice_log.unexpected() == [] and bob_log.unexpected() == []
    daemon.assert_no_traceback()
