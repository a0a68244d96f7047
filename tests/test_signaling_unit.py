"""Signaling without a broker: what a hostile stream of messages can and cannot do."""

from __future__ import annotations

import asyncio
import json

from peercam.config import WebRtcConfig
from peercam.hub import MediaHub
from peercam.ice import IceServers
from peercam.media import VideoInfo
from peercam.protocol import Topics
from peercam.signaling import MAX_IDLE_INBOXES, DeviceDescription, Signaling


class NoSource:
    async def start(self, sink, on_fault) -> None:  # never asked in these tests
        raise AssertionError("no camera should start")

    async def stop(self) -> None:
        pass

    def request_keyframe(self) -> None:
        pass


def make_signaling(sent: list[tuple[str, dict]]) -> Signaling:
    async def publish(topic: str, payload: bytes, retain: bool) -> bool:
        sent.append((topic, json.loads(payload)))
        return True

    return Signaling(
        topics=Topics("peercam", "door"),
        webrtc=WebRtcConfig(),
        description=DeviceDescription(
            name="Door",
            video=VideoInfo("H264", 320, 240, 30),
            audio_codec=None,
            talkback=False,
            version="test",
        ),
        video=MediaHub(NoSource(), kind="video", queue_frames=4),
        audio=None,
        ice=IceServers([], turn_secret=None, ttl=600, device_id="door"),
        publish=publish,
    )


async def test_garbage_from_many_viewer_ids_does_not_grow_memory() -> None:
    sent: list[tuple[str, dict]] = []
    signaling = make_signaling(sent)
    for i in range(MAX_IDLE_INBOXES * 4):
        signaling.on_message(f"peercam/door/in/v{i}", b"{nope")
    await asyncio.sleep(0.05)
    assert len(signaling._inboxes) <= MAX_IDLE_INBOXES
    assert len(sent) == MAX_IDLE_INBOXES * 4  # everyone still got its error
    assert all(m["code"] == "bad-request" for _, m in sent)
    await signaling.close()


async def test_a_flood_from_one_viewer_gets_one_rate_limit_error_a_second() -> None:
    sent: list[tuple[str, dict]] = []
    signaling = make_signaling(sent)
    hello = json.dumps({"v": 1, "type": "hello", "session": "abcdefgh1234"}).encode()
    for _ in range(500):
        signaling.on_message("peercam/door/in/mallory", hello)
    signaling.on_message("peercam/door/in/alice", hello)
    await asyncio.sleep(0.2)
    to_mallory = [m for t, m in sent if t.endswith("/mallory")]
    limited = [m for m in to_mallory if m["type"] == "error" and m["code"] == "rate-limited"]
    assert len(limited) == 1
    assert len(to_mallory) <= 70  # the burst allowance, not 500 answers
    assert [m["type"] for t, m in sent if t.endswith("/alice")] == ["welcome"]
    await signaling.close()


async def test_messages_on_foreign_topics_are_ignored() -> None:
    sent: list[tuple[str, dict]] = []
    signaling = make_signaling(sent)
    signaling.on_message("peercam/door/in/Not_Valid", b"{}")
    signaling.on_message("peercam/other/in/alice", b"{}")
    await asyncio.sleep(0.05)
    assert sent == [] and signaling._inboxes == {}
    await signaling.close()
