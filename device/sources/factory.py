"""Build the configured camera and microphone sources."""

from __future__ import annotations

from ..config import AudioConfig, CameraConfig
from ..media import EncodedSource, VideoInfo


class SourceUnavailable(Exception):
    """The configured source cannot be used on this machine; the message says why."""


def make_video_source(cfg: CameraConfig, *, name: str) -> tuple[EncodedSource, VideoInfo]:
    if cfg.source == "test-pattern":
        from .substream import SubstreamSpec
        from .test_pattern import TestPatternSource

        wanted, _ = cfg.substream_wanted(software_encoder=False)

        source = TestPatternSource(
            width=cfg.width,
            height=cfg.height,
            fps=cfg.fps,
            bitrate=cfg.bitrate,
            keyframe_interval=cfg.keyframe_interval,
            name=name,
            pattern=cfg.pattern,
            substream=SubstreamSpec(
                cfg.substream_width,
                cfg.substream_height,
                cfg.substream_bitrate,
                cfg.substream_iperiod,
            )
            if wanted
            else None,
        )
        return source, source.info
    if cfg.source == "picamera2":
        from .picamera2_source import make_picamera2_source

        camera = make_picamera2_source(cfg)
        return camera, camera.info
    raise SourceUnavailable(
        f"[camera] source = {cfg.source!r} is not available (use 'test-pattern' or 'picamera2')"
    )


def make_audio_source(cfg: AudioConfig) -> tuple[EncodedSource, str] | None:
    """The microphone source and its codec name, or None for a video-only device."""
    if cfg.source == "none":
        return None
    from .audio import CODEC, AlsaSource, TestToneSource

    if cfg.source == "test-tone":
        return TestToneSource(), CODEC
    if cfg.source.startswith("alsa:"):
        return AlsaSource(cfg.source.removeprefix("alsa:")), CODEC
    raise SourceUnavailable(
        f"[audio] source = {cfg.source!r} is not available (use 'none', 'test-tone' or "
        "'alsa:<device>')"
    )
