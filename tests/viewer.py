"""A real Python viewer speaking PROTOCOL.md: MQTT signaling plus an aiortc receiver.

Used by the integration tests and by the benchmarks::

    async with Viewer(broker.url, device="frontdoor", viewer_id="alice") as viewer:
        watch = await viewer.watch()
        await watch.wait_frames(30, timeout=10)
        await watch.bye()

Every wait is bounded by a timeout and fails with what was received so far.
ICE stays on loopback: before its first peer connection the viewer restricts
aioice's host addresses to ``host_networks`` (``peercam.ice``), and it never
lets aiortc fall back to its default public STUN server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

PROTOCOL_VERSION = 1
LOOPBACK_ONLY = ("127.0.0.1/32",)

Message = dict[str, Any]


def new_session_id() -> str:
    """A fresh session id matching ``^[A-Za-z0-9_-]{8,64}$`` (16 characters)."""
    return secrets.token_urlsafe(12)


class SignalingError(Exception):
    """The device answered with an ``error`` message; ``.code``, ``.message``, ``.error``."""

    def __init__(self, error: Message) -> None:
        self.error = error
        self.code: str | None = error.get("code")
        self.message: str | None = error.get("message")
        super().__init__(f"device error {self.code!r}: {self.message}")


def restrict_ice_to(networks: Sequence[str] | None) -> None:
    """Make aioice gather host candidates only inside ``networks`` (process-wide).

    Called before every peer connection, not cached: another test may have
    restored aioice's default (every non-loopback address) in between.
    """
    if networks is None:
        return
    from peercam.ice import restrict_host_addresses  # lazily: the daemon package owns it

    restrict_host_addresses(list(networks))


def ice_servers_from_welcome(servers: Sequence[Message] | None) -> list[RTCIceServer]:
    """RTCIceServer objects from a welcome's ``ice_servers`` (always an explicit list)."""
    result: list[RTCIceServer] = []
    for server in servers or []:
        result.append(
            RTCIceServer(
                urls=server["urls"],
                username=server.get("username"),
                credential=server.get("credential"),
            )
        )
    return result


async def create_offer(
    ice_servers: Sequence[RTCIceServer] = (),
    *,
    video: bool = True,
    audio: bool = False,
    video_mime: str | None = None,
    host_networks: Sequence[str] | None = LOOPBACK_ONLY,
) -> RTCPeerConnection:
    """A peer connection with a complete local offer (ICE gathered, candidates in the SDP).

    ``video_mime`` (e.g. ``"video/VP8"``) limits the video m-line to that codec
    and ``video=False`` leaves it out, to provoke the device's ``unsupported``
    answer.  The caller closes the pc.
    """
    restrict_ice_to(host_networks)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
    try:
        if video:
            transceiver = pc.addTransceiver("video", direction="recvonly")
        if video and video_mime is not None:
            codecs = [
                c
                for c in RTCRtpReceiver.getCapabilities("video").codecs
                if c.mimeType.lower() == video_mime.lower()
            ]
            if not codecs:
                raise ValueError(f"aiortc has no {video_mime} codec")
            transceiver.setCodecPreferences(codecs)
        if audio:
            pc.addTransceiver("audio", direction="recvonly")
        # aiortc gathers every candidate inside setLocalDescription and puts them
        # in the SDP: the offer sent is the complete localDescription.
        await pc.setLocalDescription(await pc.createOffer())
    except BaseException:
        await pc.close()
        raise
    return pc


@dataclass(frozen=True, slots=True)
class CandidatePairInfo:
    """The ICE pair media flows on (from aioice's nominated pair)."""

    local_type: str
    local_address: str
    local_port: int
    remote_type: str
    remote_address: str
    remote_port: int

    def __str__(self) -> str:
        return (
            f"{self.local_type} {self.local_address}:{self.local_port} ⇄ "
            f"{self.remote_type} {self.remote_address}:{self.remote_port}"
        )


AUDIO_KEPT = 100  # decoded audio frames a WatchSession keeps (2 s of 20 ms Opus)


class WatchSession:
    """One session of a viewer: its peer connection and the frames it decoded."""

    def __init__(self, viewer: Viewer, session_id: str) -> None:
        self.viewer = viewer
        self.id = session_id
        self.pc: RTCPeerConnection | None = None
        self.welcome: Message | None = None
        self.offer_sdp: str | None = None
        self.answer_sdp: str | None = None
        self.hello_sent_at: float | None = None
        self.offer_sent_at: float | None = None
        self.answer_at: float | None = None
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.frames = 0
        self.keyframes: list[int] = []  # indices (0-based) of decoded key frames
        self.audio_frames = 0
        #: The last decoded audio frames as (sample_rate, int16 samples [channels, n]).
        self.audio_pcm: deque[tuple[int, Any]] = deque(maxlen=AUDIO_KEPT)
        self.frame_sizes: Counter[tuple[int, int]] = Counter()
        self.device_bye: Message | None = None
        self.closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()
        self._track_errors: list[str] = []
        self.channel: Any = None
        #: What arrived on the data channel: str (JSON text) or bytes, in order.
        self.channel_messages: list[str | bytes] = []

    def open_channel(self, label: str) -> None:
        assert self.pc is not None
        self.channel = self.pc.createDataChannel(label)
        self.channel.on("message", self.channel_messages.append)

    # --- timings ---

    @property
    def time_to_first_frame(self) -> float | None:
        """Seconds from hello (or from the offer when hello was skipped) to the first frame."""
        start = self.hello_sent_at if self.hello_sent_at is not None else self.offer_sent_at
        if start is None or self.first_frame_at is None:
            return None
        return self.first_frame_at - start

    @property
    def offer_to_first_frame(self) -> float | None:
        """Seconds from sending the offer to the first decoded frame."""
        if self.offer_sent_at is None or self.first_frame_at is None:
            return None
        return self.first_frame_at - self.offer_sent_at

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState if self.pc is not None else "none"

    # --- media ---

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(
            asyncio.create_task(self._consume(track), name=f"viewer-{track.kind}-{self.id}")
        )

    async def _consume(self, track: MediaStreamTrack) -> None:
        """Pull decoded frames (aiortc decodes H.264/Opus) until the track ends."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            except Exception as exc:  # a decoder problem: remember it, keep the test informative
                self._track_errors.append(f"{track.kind}: {type(exc).__name__}: {exc}")
                break
            now = time.monotonic()
            if track.kind == "video" and self.viewer.frame_hook is not None:
                self.viewer.frame_hook(self, frame)  # benchmarks: timecode, sizes
            if track.kind == "video":
                if self.first_frame_at is None:
                    self.first_frame_at = now
                self.last_frame_at = now
                if getattr(frame, "key_frame", False):
                    self.keyframes.append(self.frames)
                self.frames += 1
                self.frame_sizes[(frame.width, frame.height)] += 1
            else:
                self.audio_frames += 1
                self.audio_pcm.append((frame.sample_rate, frame.to_ndarray()))
            async with self._changed:
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(
                f"session {self.id} of {self.viewer.viewer_id}: {what} not reached within "
                f"{timeout:.1f} s ({self.describe()})"
            ) from None

    async def wait_frames(self, n: int, timeout: float = 15.0) -> int:
        """Wait until at least ``n`` video frames were decoded in total; returns the count."""
        await self._wait(lambda: self.frames >= n, timeout, f"{n} decoded frames")
        return self.frames

    async def wait_audio_frames(self, n: int, timeout: float = 15.0) -> int:
        """Wait until at least ``n`` audio frames were decoded in total; returns the count."""
        await self._wait(lambda: self.audio_frames >= n, timeout, f"{n} decoded audio frames")
        return self.audio_frames

    async def wait_more_frames(self, n: int, timeout: float = 15.0) -> int:
        """Wait for ``n`` more decoded frames than now."""
        return await self.wait_frames(self.frames + n, timeout)

    async def wait_bye(self, timeout: float = 10.0) -> Message:
        """Wait for the device's ``bye`` for this session; returns it."""
        await self._wait(lambda: self.device_bye is not None, timeout, "a bye from the device")
        assert self.device_bye is not None
        return self.device_bye

    async def wait_connection_state(self, *states: str, timeout: float = 10.0) -> str:
        """Wait (bounded, polling) until the pc's connectionState is one of ``states``."""
        deadline = time.monotonic() + timeout
        while self.connection_state not in states:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"session {self.id}: connection state {self.connection_state!r}, "
                    f"wanted {states} within {timeout:.1f} s"
                )
            await asyncio.sleep(0.05)
        return self.connection_state

    async def _device_said_bye(self, message: Message) -> None:
        async with self._changed:
            self.device_bye = message
            self._changed.notify_all()

    def selected_pair(self) -> CandidatePairInfo | None:
        """The nominated ICE candidate pair, when aiortc/aioice expose it."""
        if self.pc is None:
            return None
        try:
            for transceiver in self.pc.getTransceivers():
                ice = transceiver.receiver.transport.transport  # RTCIceTransport
                pair = ice._connection._nominated.get(1)
                if pair is None:
                    continue
                local, remote = pair.local_candidate, pair.remote_candidate
                return CandidatePairInfo(
                    local.type, local.host, local.port, remote.type, remote.host, remote.port
                )
        except (AttributeError, IndexError, KeyError):
            return None
        return None

    def describe(self) -> str:
        return (
            f"frames={self.frames} sizes={dict(self.frame_sizes)} "
            f"connection={self.connection_state} "
            f"ice={self.pc.iceConnectionState if self.pc else 'none'} "
            f"bye={self.device_bye} errors={self._track_errors}"
        )

    # --- end ---

    async def bye(self, reason: str = "hangup") -> None:
        """Tell the device this session is over, then close the peer connection."""
        if not self.closed and self.viewer.connected:
            await self.viewer.send({"type": "bye", "session": self.id, "reason": reason})
        await self.close()

    async def close(self) -> None:
        """Close the peer connection and stop the frame readers. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.viewer._sessions.get(self.id) is self:
            del self.viewer._sessions[self.id]
        if self.pc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await self.pc.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def __repr__(self) -> str:
        return f"<WatchSession {self.viewer.viewer_id}/{self.id} {self.describe()}>"


class Viewer:
    """One viewer id on the broker: signaling inbox/outbox plus any number of sessions.

    Args:
        broker_url: ``mqtt://host:port``.
        device: the device id to watch.
        viewer_id: this viewer's id (also its MQTT client id and, by default, username).
        prefix: topic prefix.
        username / password: MQTT credentials (username defaults to the viewer id).
        client_id: MQTT client id (defaults to the viewer id).
        host_networks: networks ICE may use (None: leave aioice alone).
    """

    def __init__(
        self,
        broker_url: str,
        *,
        device: str,
        viewer_id: str,
        prefix: str = "peercam",
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        host_networks: Sequence[str] | None = LOOPBACK_ONLY,
        keepalive: int = 30,
    ) -> None:
        parts = urlsplit(broker_url)
        if parts.scheme != "mqtt":
            raise ValueError(f"only mqtt:// URLs are supported here, not {broker_url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.device = device
        self.viewer_id = viewer_id
        self.prefix = prefix
        self.username = username if username is not None else viewer_id
        self.password = password
        self.client_id = client_id or viewer_id
        self.host_networks = host_networks
        self.keepalive = keepalive
        base = f"{prefix}/{device}"
        self.in_topic = f"{base}/in/{viewer_id}"
        self.out_topic = f"{base}/out/{viewer_id}"
        self.status_topic = f"{base}/status"
        self.events_topic = f"{base}/events"
        #: Every message received, in order: (topic, message).
        self.received: list[tuple[str, Message]] = []
        self.statuses: list[Message] = []
        self.events: list[Message] = []
        self.ice_servers: list[Message] | None = None  # from the last welcome
        self.last_welcome: Message | None = None
        self._pending: list[Message] = []  # out messages not yet taken by next_message
        self._events_pending: list[Message] = []
        self._sessions: dict[str, WatchSession] = {}
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed: asyncio.Condition | None = None
        self.connected = False
        self.disconnect_error: str | None = None
        #: Called with (session, frame) for every decoded video frame (benchmarks).
        self.frame_hook: Callable[[WatchSession, Any], None] | None = None

    # --- connection -------------------------------------------------------------

    @property
    def status(self) -> Message | None:
        """The latest ``status`` of the device (retained or live)."""
        return self.statuses[-1] if self.statuses else None

    async def connect(self, timeout: float = 10.0) -> Viewer:
        """Connect with a last will ``bye *``; subscribe to out, status and events."""
        if self._client is not None:
            raise RuntimeError("already connected")
        if self._changed is None:
            self._changed = asyncio.Condition()
        will = aiomqtt.Will(
            self.in_topic,
            json.dumps({"v": PROTOCOL_VERSION, "type": "bye", "session": "*"}).encode(),
            qos=1,
            retain=False,
        )
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            will=will,
            clean_session=True,
            keepalive=self.keepalive,
            timeout=timeout,
            # As browsers do: no Nagle, so a reply never waits for a delayed ACK.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        async with asyncio.timeout(timeout):
            await client.__aenter__()
        self._client = client
        self.connected = True
        try:
            async with asyncio.timeout(timeout):
                for topic in (self.out_topic, self.status_topic, self.events_topic):
                    await client.subscribe(topic, qos=1)
        except BaseException:
            self._client, self.connected = None, False
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2):
                    await client.__aexit__(None, None, None)
            raise
        self._reader = asyncio.create_task(self._read(client), name=f"viewer-{self.viewer_id}")
        return self

    async def _read(self, client: aiomqtt.Client) -> None:
        assert self._changed is not None
        try:
            async for mqtt_message in client.messages:
                topic = str(mqtt_message.topic)
                raw = mqtt_message.payload
                payload = raw if isinstance(raw, bytes | bytearray) else str(raw).encode()
                try:
                    message = json.loads(bytes(payload))
                except ValueError:
                    message = {"type": None, "unparsable": bytes(payload)[:200]}
                if not isinstance(message, dict):
                    message = {"type": None, "unparsable": message}
                await self._deliver(topic, message)
        except aiomqtt.MqttError as exc:
            self.disconnect_error = str(exc)
        finally:
            self.connected = False
            async with self._changed:
                self._changed.notify_all()

    async def _deliver(self, topic: str, message: Message) -> None:
        assert self._changed is not None
        self.received.append((topic, message))
        if topic == self.out_topic:
            if message.get("type") == "bye":
                session = self._sessions.get(str(message.get("session")))
                if session is not None:
                    await session._device_said_bye(message)
            self._pending.append(message)
        elif topic == self.status_topic:
            self.statuses.append(message)
        elif topic == self.events_topic:
            self.events.append(message)
            self._events_pending.append(message)
        async with self._changed:
            self._changed.notify_all()

    async def close(self, *, bye: bool = True) -> None:
        """Close every session (saying bye first unless ``bye=False``), then disconnect cleanly.

        A clean DISCONNECT means the broker discards the last will.
        """
        for session in list(self._sessions.values()):
            if bye and self.connected:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await session.bye()
            await session.close()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(5):
                    await client.__aexit__(None, None, None)
        await self._stop_reader()
        self.connected = False

    async def drop(self, timeout: float = 5.0) -> None:
        """Cut the MQTT socket without DISCONNECT: the broker publishes the last will.

        Peer connections stay open (as in a viewer whose network to the broker
        died); ``close()`` still cleans them up.
        """
        client, self._client = self._client, None
        if client is None:
            return
        sock = client._client.socket()  # paho's socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # paho notices the dead socket on its next read and reports the disconnect.
        deadline = time.monotonic() + timeout
        while self.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2):
                await client.__aexit__(None, None, None)
        await self._stop_reader()
        self.connected = False

    async def reconnect(self, timeout: float = 10.0) -> Viewer:
        """Connect again (after the broker restarted); sessions and history are kept."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2):
                    await client.__aexit__(None, None, None)
        await self._stop_reader()
        self.connected = False
        return await self.connect(timeout)

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.shield(reader)
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader

    async def __aenter__(self) -> Viewer:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- signaling ----------------------------------------------------------------

    async def send_raw(self, payload: bytes, *, timeout: float = 10.0) -> None:
        """Publish ``payload`` as-is (QoS 1) on this viewer's ``in`` topic."""
        if self._client is None:
            raise RuntimeError(f"viewer {self.viewer_id} is not connected")
        await self._client.publish(self.in_topic, payload, qos=1, timeout=timeout)

    async def send(self, msg: Message, *, timeout: float = 10.0) -> None:
        """Publish a protocol message (``"v": 1`` added unless present)."""
        body = msg if "v" in msg else {"v": PROTOCOL_VERSION, **msg}
        await self.send_raw(json.dumps(body).encode(), timeout=timeout)

    async def _wait_changed(self, predicate: Callable[[], bool], timeout: float) -> bool:
        assert self._changed is not None, "connect() first"
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            return False
        return True

    def _take(self, matches: Callable[[Message], bool]) -> Message | None:
        for i, message in enumerate(self._pending):
            if matches(message):
                return self._pending.pop(i)
        return None

    async def next_message(
        self,
        type: str | None = None,
        *,
        session: str | None = None,
        timeout: float = 10.0,
    ) -> Message:
        """The oldest not-yet-taken message on the ``out`` topic, optionally of a type/session.

        Messages that do not match stay queued for later calls.
        """

        def matches(m: Message) -> bool:
            return (type is None or m.get("type") == type) and (
                session is None or m.get("session") == session
            )

        found: list[Message] = []

        def ready() -> bool:
            m = self._take(matches)
            if m is not None:
                found.append(m)
                return True
            return False

        if not await self._wait_changed(ready, timeout) and not found:
            raise AssertionError(
                f"viewer {self.viewer_id}: no {type or 'message'}"
                f"{f' for session {session}' if session else ''} within {timeout:.1f} s; "
                f"waiting: {self._pending[-5:]}; connected={self.connected}"
            )
        return found[0]

    def pending(self) -> list[Message]:
        """Out messages received but not taken yet (a copy)."""
        return list(self._pending)

    async def expect_reply(self, session: str, type: str, timeout: float = 10.0) -> Message:
        """The next ``type`` message for ``session``; raises SignalingError on an ``error``."""
        message = await self.next_message(session=session, timeout=timeout)
        while message.get("type") not in (type, "error"):
            message = await self.next_message(session=session, timeout=timeout)
        if message.get("type") == "error":
            raise SignalingError(message)
        return message

    async def wait_status(
        self,
        predicate: Callable[[Message], bool] | None = None,
        *,
        timeout: float = 10.0,
        **fields: Any,
    ) -> Message:
        """Wait until the latest status matches ``predicate`` and every ``field=value``."""

        def ok(status: Message | None) -> bool:
            if status is None:
                return False
            if any(status.get(k) != v for k, v in fields.items()):
                return False
            return predicate is None or predicate(status)

        if not await self._wait_changed(lambda: ok(self.status), timeout):
            raise AssertionError(
                f"viewer {self.viewer_id}: status never matched {fields or predicate} within "
                f"{timeout:.1f} s; last statuses: {self.statuses[-3:]}"
            )
        assert self.status is not None
        return self.status

    async def next_event(self, timeout: float = 10.0) -> Message:
        """The oldest not-yet-taken message on the device's ``events`` topic."""
        if not await self._wait_changed(lambda: bool(self._events_pending), timeout):
            raise AssertionError(f"viewer {self.viewer_id}: no event within {timeout:.1f} s")
        return self._events_pending.pop(0)

    # --- watching -------------------------------------------------------------------

    async def watch(
        self,
        session: str | None = None,
        *,
        hello: bool = True,
        audio: bool | None = None,
        end_of_candidates: bool = False,
        timeout: float = 15.0,
        call: str | None = None,
        send_audio: MediaStreamTrack | None = None,
        clip: str | None = None,
        data_channel: str | None = None,
        quality: str | None = None,
    ) -> WatchSession:
        """hello → welcome → offer → answer; returns the session with media flowing in.

        Args:
            session: the session id (a fresh one by default).
            hello: send ``hello`` first (else reuse ``ice_servers`` of an earlier welcome).
            audio: offer an audio m-line (default: when the welcome announces audio).
            end_of_candidates: also send ``candidate: null`` after the offer.
            timeout: bound for each reply.
            call: answer this call (the offer carries ``call``).
            send_audio: a track to send (talkback): the audio m-line becomes sendrecv.
            clip: play this recorded clip instead of live (v1.1; the offer carries ``clip``).
            data_channel: open a data channel with this label (``"playback"`` for clips);
                its messages land in ``channel_messages``.
            quality: v1.1 ``quality`` in the offer ("auto", "high", "low").

        Raises SignalingError when the device answers with ``error``.
        """
        sid = session or new_session_id()
        watch = WatchSession(self, sid)
        previous = self._sessions.get(sid)
        if previous is not None:
            await previous.close()
        self._sessions[sid] = watch
        try:
            if hello:
                watch.hello_sent_at = time.monotonic()
                await self.send({"type": "hello", "session": sid})
                watch.welcome = await self.expect_reply(sid, "welcome", timeout)
                self.last_welcome = watch.welcome
                self.ice_servers = list(watch.welcome.get("ice_servers") or [])
            elif self.last_welcome is not None:
                watch.welcome = self.last_welcome
            if audio is None:
                audio = bool(watch.welcome and watch.welcome.get("audio"))
            restrict_ice_to(self.host_networks)
            pc = RTCPeerConnection(
                RTCConfiguration(iceServers=ice_servers_from_welcome(self.ice_servers))
            )
            watch.pc = pc
            pc.on("track", watch._on_track)
            pc.addTransceiver("video", direction="recvonly")
            if send_audio is not None:
                pc.addTransceiver(send_audio, direction="sendrecv")
            elif audio:
                pc.addTransceiver("audio", direction="recvonly")
            if data_channel is not None:
                watch.open_channel(data_channel)
            async with asyncio.timeout(timeout):
                await pc.setLocalDescription(await pc.createOffer())
            watch.offer_sdp = pc.localDescription.sdp
            watch.offer_sent_at = time.monotonic()
            offer: Message = {"type": "offer", "session": sid, "sdp": watch.offer_sdp}
            if call is not None:
                offer["call"] = call
            if clip is not None:
                offer["clip"] = clip
            if quality is not None:
                offer["quality"] = quality
            await self.send(offer)
            if end_of_candidates:
                await self.send({"type": "candidate", "session": sid, "candidate": None})
            answer = await self.expect_reply(sid, "answer", timeout)
            watch.answer_at = time.monotonic()
            watch.answer_sdp = answer["sdp"]
            async with asyncio.timeout(timeout):
                await pc.setRemoteDescription(
                    RTCSessionDescription(sdp=answer["sdp"], type="answer")
                )
        except BaseException:
            await watch.close()
            raise
        return watch

    @property
    def sessions(self) -> list[WatchSession]:
        return list(self._sessions.values())

    def __repr__(self) -> str:
        return f"<Viewer {self.viewer_id}→{self.device} connected={self.connected}>"


#: ``viewer_factory``'s type: ``await viewer_factory(broker, "alice", device=...)``.
ViewerFactory = Callable[..., Awaitable[Viewer]]
