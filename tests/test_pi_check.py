"""``peercam check`` on a (fake) Raspberry Pi: camera model and modes, encoder, microphone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from peercam.pi_check import _capture_devices
from tests.daemon_proc import default_config, merge_config, to_toml
from tests.fakecam import FAKE_HARDWARE, FakeCamera
from tests.mosquitto import MosquittoBroker

pytestmark = pytest.mark.timeout(90)


def check(
    tmp_path: Path, broker: MosquittoBroker, cam: FakeCamera, **sections: dict
) -> tuple[int, str]:
    config = merge_config(
        default_config(broker.url),
        {"camera": {"source": "picamera2", "width": 640, "height": 480}, **sections},
    )
    path = tmp_path / "peercam.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "peercam", "check", "--config", str(path), *FAKE_HARDWARE],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **cam.env()},
    )
    return result.returncode, result.stdout


def test_a_working_pi_reports_camera_modes_encoder_and_microphone(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    cam = FakeCamera(tmp_path / "hw")
    rc, out = check(tmp_path, mosquitto, cam, audio={"source": "test-tone"})
    assert rc == 0, out
    assert "[ok] camera 0: imx708 (" in out
    assert (
        "[ok] camera 0 (imx708) sensor modes: 1536x864 120 fps 10-bit, 2304x1296 56 fps 10-bit, "
        "4608x2592 14 fps 10-bit" in out
    )
    assert "[ok] H.264 encoder: hardware" in out
    assert "[ok] camera picamera2 640x480@30: first frame in" in out
    assert "profile-level-id 42c0" in out  # constrained baseline
    assert (
        "[ok] substream 640x360@30, 400 kbit/s, hardware encoder (a second H264Encoder on "
        "picamera2's lores stream): first frame in" in out
    )
    assert "[ok] microphone: test tone (440 Hz), Opus 48 kHz" in out
    assert "all checks passed" in out


def test_on_a_pi_5_the_substream_is_off_with_a_warning_unless_configured(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    cam = FakeCamera(tmp_path / "hw")
    cam.set(platform="pisp")
    rc, out = check(tmp_path, mosquitto, cam)
    assert rc == 0, out
    assert "[warn] substream off: this Pi encodes in software (Pi 5)" in out
    rc, out = check(
        tmp_path,
        mosquitto,
        cam,
        camera={"source": "picamera2", "width": 640, "height": 480, "substream": True},
    )
    assert rc == 0, out
    assert "[ok] substream 640x360@30, 400 kbit/s, software encoder (libx264): first frame" in out


def test_what_is_missing_comes_with_the_command_that_fixes_it(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    cam = FakeCamera(tmp_path / "hw")
    cam.set(cameras=[], platform="pisp")
    rc, out = check(tmp_path, mosquitto, cam, audio={"source": "alsa:plughw:7,0"})
    assert rc == 1
    assert (
        "[FAIL] no camera detected: check the ribbon cable and `rpicam-hello --list-cameras`" in out
    )
    assert "first frame" not in out, "no second failure for the same missing camera"
    assert "[FAIL] microphone alsa:plughw:7,0" in out
    assert "continuing with video only" not in out

    cam.set(cameras=["imx219"])
    rc, out = check(
        tmp_path, mosquitto, cam, camera={"source": "picamera2", "width": 3840, "height": 2160}
    )
    assert rc == 1
    assert "[warn] H.264 encoder: software" in out
    assert (
        "[FAIL] [camera] 3840x2160 is larger than the sensor (3280x2464): lower [camera] "
        "width/height" in out
    )


def test_alsa_capture_devices_are_listed_from_proc(tmp_path: Path) -> None:
    pcm = tmp_path / "pcm"
    pcm.write_text(
        "00-00: bcm2835 HDMI 1 : bcm2835 HDMI 1 : playback 8\n"
        "01-00: USB Audio : USB Audio : playback 1 : capture 1\n",
        encoding="utf-8",
    )
    assert _capture_devices(pcm) == ["plughw:1,0 (USB Audio)"]
    assert _capture_devices(tmp_path / "missing") == []
