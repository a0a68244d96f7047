"""``peercam check`` on a Raspberry Pi: camera, encoder and microphone, with the fixes.

Each check yields ``(status, text)`` with status ``"ok"``, ``"warn"`` or
``"FAIL"``; a failure's text ends with the command that fixes it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import AudioConfig, CameraConfig
from .sources.factory import SourceUnavailable

Line = tuple[str, str]

ENCODER_DEVICE = Path("/dev/video11")  # bcm2835-codec-encode on Pi Zero 2 / 3 / 4
GROUP_HELP = "add the service user to the {group} group: `sudo usermod -aG {group} $USER`"


def _modes(camera: Any) -> str:
    described = []
    for mode in camera.sensor_modes:
        size = mode.get("size")
        if not size:  # a camera that is not a raw sensor (USB) reports only a format
            described.append(str(mode.get("format", "?")))
            continue
        depth = f" {mode['bit_depth']}-bit" if mode.get("bit_depth") else ""
        fps = f" {mode['fps']:.0f} fps" if mode.get("fps") else ""
        described.append(f"{size[0]}x{size[1]}{fps}{depth}")
    return ", ".join(described) or "none reported"


def camera_report(cfg: CameraConfig) -> Iterator[Line]:
    """picamera2 present, cameras and their modes, the configured one usable, the encoder."""
    from .sources.picamera2_source import NO_CAMERA_HELP, describe_open_error, load_picamera2

    try:
        api = load_picamera2()
    except SourceUnavailable as exc:
        yield "FAIL", str(exc)
        return
    yield "ok", f"picamera2 {api.version}" + (" (fake camera, --fake-hardware)" if api.fake else "")
    cameras = list(api.Picamera2.global_camera_info())
    if not cameras:
        yield "FAIL", f"no camera detected: {NO_CAMERA_HELP}"
        return
    for cam in cameras:
        yield "ok", f"camera {cam.get('Num')}: {cam.get('Model', '?')} ({cam.get('Id', '?')})"
    try:
        camera = api.Picamera2(camera_num=cfg.index)
    except (IndexError, RuntimeError) as exc:
        yield "FAIL", describe_open_error(exc, cfg.index, cameras)
    else:
        try:
            model = camera.camera_properties.get("Model", "camera")
            yield "ok", f"camera {cfg.index} ({model}) sensor modes: {_modes(camera)}"
            largest = max(
                (m["size"] for m in camera.sensor_modes if m.get("size")),
                key=lambda s: s[0] * s[1],
                default=None,
            )
            if largest and (cfg.width > largest[0] or cfg.height > largest[1]):
                yield (
                    "FAIL",
                    (
                        f"[camera] {cfg.width}x{cfg.height} is larger than the sensor "
                        f"({largest[0]}x{largest[1]}): lower [camera] width/height"
                    ),
                )
        finally:
            camera.close()
    yield from encoder_report(api)


def encoder_report(api: Any) -> Iterator[Line]:
    if api.software_encoder:
        yield (
            "warn",
            (
                "H.264 encoder: software (libx264 through picamera2): this Pi has no hardware "
                "encoder (e.g. a Pi 5); expect high CPU, keep [camera] width/height/fps modest"
            ),
        )
        return
    if api.fake:
        yield "ok", "H.264 encoder: hardware (fake V4L2 device)"
        return
    if not ENCODER_DEVICE.exists():
        yield (
            "FAIL",
            (
                f"H.264 encoder {ENCODER_DEVICE} is missing (bcm2835-codec not loaded): "
                "`sudo modprobe bcm2835-codec`, and check `camera_auto_detect=1` in "
                "/boot/firmware/config.txt"
            ),
        )
    elif not os.access(ENCODER_DEVICE, os.R_OK | os.W_OK):
        yield "FAIL", f"no access to {ENCODER_DEVICE}: " + GROUP_HELP.format(group="video")
    else:
        yield "ok", f"H.264 encoder: hardware ({ENCODER_DEVICE}, bcm2835-codec)"


def _capture_devices(proc: Path = Path("/proc/asound/pcm")) -> list[str]:
    """``plughw:C,D  name`` for every ALSA capture device."""
    try:
        lines = proc.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = [p.strip() for p in line.split(":")]
        if len(parts) >= 3 and "capture" in line and "-" in parts[0]:
            card, device = (int(x) for x in parts[0].split("-"))
            found.append(f"plughw:{card},{device} ({parts[1]})")
    return found


async def microphone_report(cfg: AudioConfig, timeout: float = 5.0) -> list[Line]:
    """Open the configured microphone and read sound from it once."""
    if cfg.source == "none":
        return [("ok", "microphone: none (video only)")]
    if cfg.source == "test-tone":
        return [("ok", "microphone: test tone (440 Hz), Opus 48 kHz")]
    from .sources.audio import VIDEO_ONLY, MicrophoneError, open_alsa

    device = cfg.source.removeprefix("alsa:")
    lines: list[Line] = []
    devices = _capture_devices()
    if devices:
        lines.append(("ok", "ALSA capture devices: " + ", ".join(devices)))

    def read_once() -> str:
        container = open_alsa(device)
        try:
            frame = next(container.decode(audio=0))
            return f"{frame.sample_rate} Hz, {frame.layout.name}"
        finally:
            container.close()

    try:
        what = await asyncio.wait_for(asyncio.to_thread(read_once), timeout)
    except MicrophoneError as exc:
        lines.append(("FAIL", f"microphone {str(exc).removesuffix('; ' + VIDEO_ONLY)}"))
    except TimeoutError:
        lines.append(
            ("FAIL", f"microphone alsa:{device}: opened, but no sound within {timeout:.0f} s")
        )
    except Exception as exc:
        lines.append(("FAIL", f"microphone alsa:{device}: {exc or type(exc).__name__}"))
    else:
        lines.append(("ok", f"microphone alsa:{device}: delivers sound ({what}), Opus 48 kHz"))
    return lines
