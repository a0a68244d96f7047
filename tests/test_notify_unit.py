"""The pure parts of notifications: URLs and secrets files, the 4 KB push payload with
its thumbnail, the sending thread's queue and its once-per-streak logging."""

from __future__ import annotations

import base64
import json
import logging
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from peercam.config import ConfigError, config_from_dict
from peercam.notify import Notifications
from peercam.notify.webpush import PAYLOAD_BUDGET, fit_payload
from peercam.notify.worker import Job, SendWorker, Streaks


def noisy_jpeg(width: int = 1280, height: int = 720) -> bytes:
    """A busy 720p picture (random noise): the hardest case for a small thumbnail."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    pixels = np.random.default_rng(1).integers(0, 255, (height, width, 3), np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuvj420p")
    return bytes([*codec.encode(frame), *codec.encode(None)][0])


def test_a_busy_snapshot_still_fits_the_push_payload() -> None:
    message = {"v": 1, "kind": "ring", "title": "Front door: someone is at the door", "x": "é"}
    payload = fit_payload(message, noisy_jpeg())
    assert len(payload) <= PAYLOAD_BUDGET
    image = json.loads(payload)["image"]
    thumb = base64.b64decode(image.removeprefix("data:image/jpeg;base64,"))
    assert thumb.startswith(b"\xff\xd8")
    assert av.CodecContext.create("mjpeg", "r").decode(av.Packet(thumb))  # decodes


def test_a_broken_snapshot_goes_without_a_picture() -> None:
    payload = json.loads(fit_payload({"v": 1, "title": "t"}, b"\xff\xd8not a jpeg"))
    assert "image" not in payload


def test_urls_file_adds_urls_and_a_bad_url_is_named(tmp_path: Path) -> None:
    secrets = tmp_path / "urls"
    secrets.write_text("# tokens\njson://127.0.0.1:9/a\n\n  ntfy://127.0.0.1:9/door  \n")
    cfg = config_from_dict(
        {"notify": {"urls": ["json://127.0.0.1:9/b"], "urls_file": str(secrets)}}
    )
    assert cfg.read_notify_urls() == [
        "json://127.0.0.1:9/b",
        "json://127.0.0.1:9/a",
        "ntfy://127.0.0.1:9/door",
    ]
    bad = config_from_dict({"notify": {"urls": ["nosuchservice://x/y"], "web_push": False}})
    with pytest.raises(ConfigError, match="nosuchservice"):
        Notifications(bad)
    missing = config_from_dict({"notify": {"urls_file": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match=r"notify.urls_file.*cannot read"):
        missing.read_notify_urls()


def test_config_refuses_what_cannot_work() -> None:
    for notify, needle in (
        ({"events": ["ring", "doorbell"]}, "events"),
        ({"push_contact": "me@example.org"}, "mailto:"),
        ({"dashboard_url": "door.example"}, "http"),
    ):
        with pytest.raises(ConfigError, match=needle):
            config_from_dict({"notify": notify})


def test_a_failure_streak_is_logged_once_and_its_end_too(caplog: pytest.LogCaptureFixture) -> None:
    streaks = Streaks()
    with caplog.at_level(logging.INFO, logger="peercam.notify"):
        for _ in range(5):
            streaks.failed("ntfy://host/topic", "connection refused")
        streaks.succeeded("ntfy://host/topic")
        streaks.succeeded("ntfy://host/topic")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert lines == [
        "notify: ntfy://host/topic: connection refused (further failures are not logged "
        "until it works again)",
        "notify: ntfy://host/topic: delivered again after 5 failure(s)",
    ]


def test_a_stuck_send_holds_a_bounded_queue_that_drops_its_oldest() -> None:
    worker = SendWorker("test", limit=3)
    release = threading.Event()
    started = threading.Event()
    ran: list[int] = []

    def stuck() -> None:
        started.set()
        release.wait(10)

    worker.submit(Job("stuck", stuck))
    assert started.wait(5)
    for n in range(5):  # submit never blocks, even with the sender stuck
        worker.submit(Job(f"job {n}", lambda n=n: ran.append(n)))
    assert worker.dropped == 2
    release.set()
    worker.close(timeout=5)
    assert ran == [2, 3, 4]


def test_provisioning_bundles_say_who_may_get_pushes_and_where_the_dashboard_is(
    tmp_path: Path,
) -> None:
    from peercam.config import load_config
    from tests.provisioned import Site

    site = Site(tmp_path)
    site.init()
    site.provision("init", "--web-proxy", "--public-host", "door.example.net")
    site.add_device("frontdoor")
    for viewer in ("alice", "bob"):
        site.add_viewer(viewer, "frontdoor")
    site.provision("revoke", "bob", "frontdoor")
    site.provision("export")
    bundle = site.bundle_dir("frontdoor")
    listed = (bundle / "viewers.txt").read_text().splitlines()
    assert [line for line in listed if not line.startswith("#")] == ["alice"]
    config = load_config(bundle / "peercam.toml")
    assert config.notify.viewers_file.endswith("/viewers.txt")
    assert config.notify.dashboard_url == "https://door.example.net/"
