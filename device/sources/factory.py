"""Build the configured camera and microphone sources."""

from __future__ import annotations

from ..config import AudioConfig, CameraConfig
from ..media import EncodedSource, VideoInfo


class SourceUnavailable(Exception):
    """The configured source cannot be used on this machine; the message says why."""


def make_video_source(cfg: CameraConfig, *, name: str) -> tuple[EncodedSource, VideoInfo]:
    if cfg.source == "test-pattern":
        from .test_pattern import TestPatternSource

        source = TestPatternSource(
            width=cfg.width,
            height=cfg.height,
            fps=cfg.fps,
            bitrate=cfg.bitrate,
            keyframe_interval=cfg.keyframe_interval,
            name=name,
            pattern=cfg.pattern,
        )
        return source, source.info
    raise SourceUnavailable(
        f"[camera] source = {cfg.source!r} is not available in this version (use 'test-pattern')"
    )


def make_audio_source(cfg: AudioConfig) -> tuple[EncodedSource, str] | None:
    """The microphone source and its codec name, or None for a video-only device."""
    if cfg.source == "none":
        return None
    raise SourceUnavailable(
        f"[audio] source = {cfg.source!r} is not available in this version (use 'none')"
    )
