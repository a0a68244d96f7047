"""``peercam check``: say what works and what does not, before running for real."""

from __future__ import annotations

import asyncio

from .config import Config, ConfigError
from .mqtt_link import LastWill, MqttLink, describe_mqtt_error
from .protocol import Topics
from .sources.factory import SourceUnavailable, make_audio_source, make_video_source


def _line(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")


async def run_checks(config: Config) -> int:
    failures = 0
    try:
        password = config.read_mqtt_password()
        config.read_turn_secret()
        _line(True, "secrets readable")
    except ConfigError as exc:
        _line(False, str(exc))
        return 1
    try:
        _, info = make_video_source(config.camera, name=config.device.name)
        _line(
            True,
            f"camera {config.camera.source}: {info.width}x{info.height}@{info.fps} {info.codec}",
        )
    except SourceUnavailable as exc:
        _line(False, str(exc))
        failures += 1
    try:
        audio = make_audio_source(config.audio)
        _line(True, f"microphone: {'none (video only)' if audio is None else audio[1]}")
    except SourceUnavailable as exc:
        _line(False, str(exc))
        failures += 1
    topics = Topics(config.mqtt.topic_prefix, config.device.id)
    link = MqttLink(
        config.mqtt,
        client_id=f"peercam-check-{config.device.id}",
        password=password,
        will=LastWill(topics.base + "/check", b"", retain=False),
        subscriptions=[],
        on_message=lambda topic, payload: None,
        on_connect=asyncio.sleep,  # type: ignore[arg-type]
    )
    try:
        await link.connect_once(timeout=10)
        _line(True, f"broker {config.mqtt.url} accepts user {config.mqtt.username!r}")
    except TimeoutError:
        _line(False, f"broker {config.mqtt.url}: no answer within 10 s")
        failures += 1
    except Exception as exc:
        _line(False, describe_mqtt_error(exc, config.mqtt))
        failures += 1
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 0 if not failures else 1
