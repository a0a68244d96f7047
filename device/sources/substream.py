"""The substream: a second, smaller H.264 encode of the camera's picture.

It is not a camera of its own: it taps the main source's capture (picamera2's
``lores`` stream into a second ``H264Encoder``; the test pattern's picture
scaled down into a second libx264), so it needs the main capture running.
``SubstreamSource`` is the ``EncodedSource`` its hub owns: starting it holds
the main hub (the camera runs even with nobody on the main stream) and
attaches the second encoder to the main source; stopping detaches it and
releases the hold.  Its hub starts it only while someone watches it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..media import EncodedFrame, FaultSink, FrameSink, VideoInfo

log = logging.getLogger("peercam.camera")


@dataclass(frozen=True, slots=True)
class SubstreamSpec:
    width: int
    height: int
    bitrate: int
    keyframe_interval: int


class LoresTap(Protocol):
    """What a main source offers the substream (the test pattern, the Pi camera)."""

    #: "hardware" or "software": where the second encode runs.
    lores_encoder_kind: str

    async def attach_lores(
        self, deliver: Callable[[EncodedFrame], None], on_fault: FaultSink
    ) -> None:
        """Encode the substream from now on (also across the main source's restarts)."""

    async def detach_lores(self) -> None:
        """Stop encoding the substream; nothing more reaches ``deliver``."""

    def request_lores_keyframe(self) -> None: ...


class SubstreamSource:
    """The substream hub's source: a tap on the main source, holding the main capture."""

    stall_hint = "the main capture delivers no substream frames"

    def __init__(
        self,
        main: LoresTap,
        spec: SubstreamSpec,
        fps: int,
        *,
        hold_main: Callable[[], None],
        release_main: Callable[[], None],
    ) -> None:
        self.main = main
        self.spec = spec
        self.info = VideoInfo(codec="H264", width=spec.width, height=spec.height, fps=fps)
        self._hold_main = hold_main
        self._release_main = release_main
        self._sink: FrameSink | None = None
        self._holding = False

    @property
    def encoder_kind(self) -> str:
        return self.main.lores_encoder_kind

    async def start(self, sink: FrameSink, on_fault: FaultSink) -> None:
        if self._sink is not None:
            return
        self._sink = sink
        if not self._holding:
            self._holding = True
            self._hold_main()
        await self.main.attach_lores(self._deliver, on_fault)
        log.info(
            "substream %dx%d, %d kbit/s, IDR every %d frames (%s encoder)",
            self.spec.width,
            self.spec.height,
            self.spec.bitrate // 1000,
            self.spec.keyframe_interval,
            self.encoder_kind,
        )

    def _deliver(self, frame: EncodedFrame) -> None:
        if self._sink is not None:
            self._sink(frame)

    async def stop(self) -> None:
        self._sink = None
        await self.main.detach_lores()
        if self._holding:
            self._holding = False
            self._release_main()

    def request_keyframe(self) -> None:
        self.main.request_lores_keyframe()
