"""Signaling with real sessions (aiortc) but no broker: a recording fake link.

``Harness`` builds a ``Signaling`` whose ``publish`` records every message
(in call order, so "the viewer would see A before B" is checkable) and can
hold chosen messages back, like a slow broker.  Offers come from real aiortc
peer connections on loopback (``tests.viewer.create_offer``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from peercam.config import WebRtcConfig
from peercam.hub import MediaHub
from peercam.ice import IceServers
from peercam.media import VideoInfo
from peercam.protocol import Topics
from peercam.signaling import DeviceDescription, Signaling
from tests.viewer import create_offer

DEVICE = "door"
Message = dict[str, Any]


class IdleSource:
    """A camera that starts and stays silent (sessions never need frames here)."""

    async def start(self, sink: Any, on_fault: Any) -> None:
        pass

    async def stop(self) -> None:
        pass

    def request_keyframe(self) -> None:
        pass


@dataclass
class Harness:
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)
    sent: list[tuple[str, Message]] = field(default_factory=list)
    #: predicate -> awaitable: a matching message's publish waits for it first.
    hold: list[tuple[Callable[[str, Message], bool], Callable[[], Awaitable[object]]]] = field(
        default_factory=list
    )
    signaling: Signaling | None = None
    hub: MediaHub | None = None
    offers: list[RTCPeerConnection] = field(default_factory=list)
    #: extra keyword arguments for ``Signaling`` (e.g. ``status_refresh``)
    options: dict[str, Any] = field(default_factory=dict)

    def start(self) -> Signaling:
        self.hub = MediaHub(IdleSource(), kind="video", queue_frames=4, idle_stop=0.1)
        self.signaling = Signaling(
            topics=Topics("peercam", DEVICE),
            webrtc=self.webrtc,
            description=DeviceDescription(
                name="Door",
                video=VideoInfo("H264", 320, 240, 30),
                audio_codec=None,
                talkback=False,
                version="test",
            ),
            video=self.hub,
            audio=None,
            ice=IceServers([], turn_secret=None, ttl=600, device_id=DEVICE),
            publish=self._publish,
            **self.options,
        )
        self.signaling.start()
        return self.signaling

    async def _publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        viewer = topic.rsplit("/", 1)[-1]
        message = json.loads(payload)
        self.sent.append((viewer if "/out/" in topic else topic, message))
        for matches, wait in self.hold:
            if matches(viewer, message):
                await wait()
        return True

    # --- viewers' side ---

    def send(self, viewer: str, message: Message) -> None:
        assert self.signaling is not None
        body = {"v": 1, **message}
        self.signaling.on_message(f"peercam/{DEVICE}/in/{viewer}", json.dumps(body).encode())

    def send_raw(self, viewer: str, payload: bytes) -> None:
        assert self.signaling is not None
        self.signaling.on_message(f"peercam/{DEVICE}/in/{viewer}", payload)

    async def offer_sdp(self) -> str:
        pc = await create_offer([])
        self.offers.append(pc)
        return pc.localDescription.sdp

    async def offer(self, viewer: str, session: str) -> None:
        self.send(viewer, {"type": "offer", "session": session, "sdp": await self.offer_sdp()})

    def statuses(self) -> list[Message]:
        return [m for v, m in self.sent if v.endswith("/status")]

    def to(self, viewer: str) -> list[Message]:
        return [m for v, m in self.sent if v == viewer]

    async def reply(
        self,
        viewer: str,
        session: str | None = None,
        types: tuple[str, ...] = ("answer", "error"),
        timeout: float = 10.0,
    ) -> Message:
        """The first message to ``viewer`` (for ``session``) of one of ``types``; bounded."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.to(viewer):
                if message.get("type") in types and (
                    session is None or message.get("session") == session
                ):
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no {types} for {viewer}/{session}: {self.to(viewer)}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self.signaling is not None:
            await self.signaling.close()
        if self.hub is not None:
            await self.hub.close()
        for pc in self.offers:
            await pc.close()


def inbox_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("peercam-inbox-")]


async def connected_viewer(h: Harness, viewer: str, session: str) -> RTCPeerConnection:
    """Offer from a real in-process peer connection and complete ICE/DTLS with the device."""
    sdp = await h.offer_sdp()
    pc = h.offers[-1]
    h.send(viewer, {"type": "offer", "session": session, "sdp": sdp})
    answer = await h.reply(viewer, session)
    assert answer["type"] == "answer", answer
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    deadline = time.monotonic() + 20  # ICE and DTLS on a busy machine
    while pc.connectionState != "connected" and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert pc.connectionState == "connected", pc.connectionState
    return pc
