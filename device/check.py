"""``peercam check``: say what works and what does not, before running for real."""

from __future__ import annotations

import asyncio
import time

from .check_hardware import check_gpio, check_speaker
from .check_ice import check_ice_servers
from .config import CameraConfig, Config, ConfigError
from .media import EncodedFrame, EncodedSource
from .mqtt_link import LastWill, MqttLink, describe_mqtt_error
from .notify.check import check_notify
from .pi_check import camera_report, microphone_report
from .protocol import Topics
from .relay.check import check_relay
from .sources.factory import SourceUnavailable, make_audio_source, make_video_source
from .sources.h264 import has_parameter_sets, profile_level_id


async def _first_frame(source: EncodedSource, timeout: float = 10.0) -> tuple[bool, str]:
    """Start the source, wait for its first access unit, describe it, stop."""
    loop = asyncio.get_running_loop()
    first: asyncio.Future[EncodedFrame] = loop.create_future()
    faults: list[str] = []

    def sink(frame: EncodedFrame) -> None:
        if not first.done():
            first.set_result(frame)

    def on_fault(message: str | None) -> None:
        if message:
            faults.append(message)

    started = time.monotonic()
    try:
        await source.start(sink, on_fault)
        frame = await asyncio.wait_for(first, timeout)
    except TimeoutError:
        return False, f"no frame within {timeout:.0f} s" + (f" ({faults[-1]})" if faults else "")
    except Exception as exc:
        return False, str(exc) or type(exc).__name__
    finally:
        await source.stop()
    elapsed = (time.monotonic() - started) * 1000
    if not (frame.keyframe and has_parameter_sets(frame.data)):
        return False, "the first frame is not an IDR with SPS/PPS in front"
    return True, (
        f"first frame in {elapsed:.0f} ms, IDR with SPS/PPS, "
        f"profile-level-id {profile_level_id(frame.data)}"
    )


async def _substream_line(source: EncodedSource, cfg: CameraConfig) -> tuple[bool | str, str]:
    """Run the main capture with the substream's encoder attached; describe its first frame."""
    spec = getattr(source, "substream", None)
    if spec is None:
        software = getattr(source, "encoder_kind", "") == "software"
        _, warning = cfg.substream_wanted(software)
        if warning:
            return "warn", warning
        why = "[camera] substream = false" if cfg.substream is False else "picture too small"
        return "ok", f"substream: off ({why}); every viewer gets the main stream"
    from .sources.substream import SubstreamSource

    held: list[int] = []
    low = SubstreamSource(
        source,  # type: ignore[arg-type]
        spec,
        cfg.fps,
        hold_main=lambda: held.append(1),
        release_main=lambda: held.append(-1),
    )
    main_faults: list[str] = []
    try:
        await source.start(lambda frame: None, lambda m: main_faults.append(m or ""))
    except Exception as exc:
        return False, f"substream: the camera did not start ({exc or type(exc).__name__})"
    try:
        ok, what = await _first_frame(low)
    finally:
        await source.stop()
    where = (
        "hardware encoder (a second H264Encoder on picamera2's lores stream)"
        if low.encoder_kind == "hardware"
        else "software encoder (libx264)"
    )
    return ok, (
        f"substream {spec.width}x{spec.height}@{cfg.fps}, {spec.bitrate // 1000} kbit/s, "
        f"{where}: {what}"
    )


def _line(ok: bool | str, what: str) -> None:
    mark = ok if isinstance(ok, str) else ("ok" if ok else "FAIL")
    print(f"  [{mark}] {what}")


def _note(what: str) -> None:
    print(f"  [warn] {what}")


async def run_checks(config: Config, *, send_notifications: bool = False) -> int:
    failures = 0
    try:
        password = config.read_mqtt_password()
        turn_secret = config.read_turn_secret()
        _line(True, "secrets readable")
    except ConfigError as exc:
        _line(False, str(exc))
        return 1
    camera_failed = False
    if config.camera.source == "picamera2":
        for mark, what in camera_report(config.camera):
            _line(mark, what)
            camera_failed |= mark == "FAIL"
        failures += camera_failed
    try:
        source, info = make_video_source(config.camera, name=config.device.name)
    except SourceUnavailable as exc:
        if not camera_failed:  # already said
            _line(False, str(exc))
            failures += 1
    else:
        if not camera_failed:  # a camera that cannot open would only fail the same way again
            ok, what = await _first_frame(source)
            _line(
                ok, f"camera {config.camera.source} {info.width}x{info.height}@{info.fps}: {what}"
            )
            failures += not ok
            if ok:
                mark, what = await _substream_line(source, config.camera)
                _line(mark, what)
                failures += mark is False
    try:
        make_audio_source(config.audio)
    except SourceUnavailable as exc:
        _line(False, str(exc))
        failures += 1
    else:
        for mark, what in await microphone_report(config.audio):
            _line(mark, what)
            failures += mark == "FAIL"
    for status, what in [await check_gpio(config), *check_speaker(config)]:
        _line(status, what)
        failures += status == "FAIL"
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
    failures += await check_ice_servers(config, turn_secret, _line, _note)
    failures += await check_relay(config, _line)
    failures += await check_notify(config, _line, send=send_notifications)
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 0 if not failures else 1
