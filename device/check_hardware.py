"""``peercam check`` for the call button, LED, door strike and speaker."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from .config import Config
from .gpio import open_panel

Result = tuple[str, str]  # ("ok" | "warn" | "FAIL", what)


async def check_gpio(config: Config) -> Result:
    gpio = config.gpio
    if not gpio.enabled or not gpio.call_button:
        return "ok", "GPIO: disabled in the config (no call button)"
    loop = asyncio.get_running_loop()
    panel, why = open_panel(gpio, loop, on_press=lambda: None, on_stuck=lambda stuck: None)
    if panel is None:
        fix = (
            " (fix: sudo apt install python3-lgpio, and add the service user to the gpio group)"
            if os.path.exists("/dev/gpiochip0")  # noqa: ASYNC240 - one stat, once
            else ""
        )
        return "warn", f"GPIO: {why}{fix}"
    try:
        pressed = panel.button.is_pressed
        parts = [f"call button BCM {gpio.call_button} ({'PRESSED now' if pressed else 'released'})"]
        parts.append(f"LED BCM {gpio.led}" if gpio.led else "no LED")
        parts.append(f"door relay BCM {gpio.door_pin}" if gpio.door_pin else "no door strike")
    finally:
        panel.close()
    if pressed:
        return (
            "warn",
            "GPIO: " + ", ".join(parts) + " — a button that reads pressed at rest is "
            "miswired or stuck (it must connect the pin to GND only while pressed)",
        )
    return "ok", "GPIO: " + ", ".join(parts)


def check_speaker(config: Config) -> list[Result]:
    talkback = config.talkback
    kind, _, target = talkback.sink.partition(":")
    results: list[Result] = []
    if kind == "none":
        return [("ok", "speaker: none (no talkback, no quick replies)")]
    if kind == "wav":
        folder = Path(target).parent
        if os.access(folder, os.W_OK):
            results.append(("ok", f"speaker: records to {target}"))
        else:
            results.append(("FAIL", f"speaker: cannot write {target} (folder {folder})"))
    elif shutil.which("aplay") is None:
        results.append(("FAIL", "speaker: aplay not found (fix: sudo apt install alsa-utils)"))
    else:
        results.append(("ok", f"speaker: ALSA {target} through aplay (list devices: aplay -L)"))
    for reply in talkback.replies:
        if reply.file and not os.access(reply.file, os.R_OK):
            results.append(("FAIL", f"quick reply {reply.id!r}: cannot read {reply.file}"))
        elif not reply.file:
            results.append(("warn", f"quick reply {reply.id!r} has no recording: plays a chime"))
    return results
