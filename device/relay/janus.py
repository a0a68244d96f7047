"""``JanusPublisher``: the hub's H.264 (and Opus) into a Janus VideoRoom, kept up.

One attempt: WebSocket → session → VideoRoom handle → the room (created H.264
only when absent; an existing room that cannot take H.264 is a fault that
says so) → join as publisher (Janus gives the feed id) → an aiortc offer
with passthrough tracks → Janus's answer → connected.  Then it waits for the
WebSocket to close, which is how a dying Janus shows (it sends no hangup),
or for the peer connection to fail, and starts over with backoff (1, 2, 4 …
``max_backoff`` s).  Janus's API-made rooms vanish when it restarts, so each
attempt checks the room again; the feed id changes, and ``on_change`` lets
the status (which viewers follow) say the new one.

Janus forwards every subscriber's PLI to the publisher (5 joins, 5 PLIs in
3 ms) and sends one at each subscriber's join: the publisher's subscription
has its own ``KeyframeRequestLimiter``, with a flat gap (``SFU_KEYFRAME_GAP``)
instead of a P2P viewer's doubling one. The SFU speaks for many viewers and
most of its PLIs are joins that need an IDR: with the doubling back-off a
subscriber joining an already-publishing device waited for the next periodic
IDR (median 556 ms, up to 2 s, bench.relay). One IDR a second at most still
coalesces bursts and bounds what the SFU's viewers cost everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from ..hub import MediaHub
from ..keyframes import KeyframeRequestLimiter
from ..session import H264_PROFILE, h264_preferences, opus_preferences
from ..tracks import PassthroughTrack
from . import PublishState
from .janus_api import VIDEOROOM, JanusClient, JanusError, JanusGone

log = logging.getLogger("peercam.relay")

CONNECT_TIMEOUT = 10.0  # s for the WebSocket and each request
#: s between IDRs the SFU may ask for (coalesces its subscribers' join PLIs; see above)
SFU_KEYFRAME_GAP = 1.0
MEDIA_TIMEOUT = 20.0


def sfu_keyframe_limiter() -> KeyframeRequestLimiter:
    """The SFU's back-off: a flat ``SFU_KEYFRAME_GAP``, never doubling (its PLIs are joins)."""
    return KeyframeRequestLimiter(
        base_gap=SFU_KEYFRAME_GAP, max_gap=SFU_KEYFRAME_GAP
    )  # s from Janus's answer to a connected peer connection


class PublishFault(Exception):
    """One attempt failed for a reason worth showing in ``status.faults`` as is."""


@dataclass(frozen=True)
class JanusTarget:
    url: str  # the device's way to Janus's WebSocket API
    viewer_url: str  # the viewers' way to it
    room: int
    create_room: bool
    bitrate: int  # the room's cap (Janus's REMB), bit/s
    display: str  # the publisher's name in the room
    api_secret: str | None = None
    room_secret: str | None = None
    room_pin: str | None = None
    max_backoff: float = 30.0


class JanusPublisher:
    """Publishes while wanted; reports ``state``, ``fault`` and the ``feed`` id."""

    def __init__(
        self,
        target: JanusTarget,
        *,
        video: MediaHub,
        audio: MediaHub | None,
        ice_servers: Callable[[], Awaitable[list[RTCIceServer]]],
        on_change: Callable[[], None],
    ) -> None:
        self.target = target
        # issue 14 (substream): when the hub offers a lower-resolution
        # substream, pass its hub here instead: the SFU's viewers on slow links
        # then get it (or publish it as a second feed and say so in where()).
        self._video = video
        self._audio = audio
        self._ice_servers = ice_servers
        self._on_change = on_change
        self.state = PublishState.IDLE
        self.fault: str | None = None
        self.feed: int | None = None
        self.publishes = 0  # successful publishes (1 + republishes)
        self.keyframe_requests = 0  # PLIs from Janus honoured (after back-off)
        self.keyframe_requests_seen = 0
        self._wanted = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: JanusClient | None = None
        self._pc: RTCPeerConnection | None = None
        self._tracks: list[PassthroughTrack] = []

    # --- interface ------------------------------------------------------------------

    def set_wanted(self, wanted: bool) -> None:
        if wanted == self._wanted:
            return
        self._wanted = wanted
        self._wake.set()
        if wanted and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="peercam-relay-publisher"
            )

    def where(self) -> dict[str, object]:
        where: dict[str, object] = {
            "mode": "janus",
            "url": self.target.viewer_url,
            "room": self.target.room,
            "feed": self.feed if self.state is PublishState.PUBLISHING else None,
            "state": str(self.state),
        }
        if self.target.room_pin:
            where["pin"] = self.target.room_pin
        return where

    async def close(self) -> None:
        self._wanted = False
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._teardown()

    # --- the loop -------------------------------------------------------------------

    def _set(self, state: PublishState, fault: str | None, feed: int | None = None) -> None:
        changed = (state, fault, feed) != (self.state, self.fault, self.feed)
        self.state, self.fault, self.feed = state, fault, feed
        if changed:
            self._on_change()

    async def _run(self) -> None:
        backoff = 1.0
        while self._wanted:
            began = time.monotonic()
            self._set(PublishState.CONNECTING, self.fault)
            try:
                why = await self._publish_once()
            except asyncio.CancelledError:
                await self._teardown()
                raise
            except (PublishFault, JanusError, JanusGone, OSError, TimeoutError) as exc:
                why = self._describe(exc)
            except Exception as exc:  # aiortc or websockets surprises: keep trying, say so
                log.exception("relay: publishing to Janus failed unexpectedly")
                why = f"unexpected {type(exc).__name__}: {exc}"
            await self._teardown()
            if not self._wanted:
                if why == "stopped":
                    log.info("relay: stopped publishing (no viewer watches through Janus)")
                break
            if time.monotonic() - began > 60:
                backoff = 1.0  # it was up for a while: this is a fresh failure
            message = f"{why}; retrying in {backoff:.0f} s"
            level = logging.DEBUG if message == self.fault else logging.WARNING
            log.log(level, "relay: %s", message)
            self._set(PublishState.FAULT, message)
            deadline = time.monotonic() + backoff
            while self._wanted and time.monotonic() < deadline:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), deadline - time.monotonic())
            backoff = min(backoff * 2, self.target.max_backoff)
        self._set(PublishState.IDLE, None)

    def _describe(self, exc: BaseException) -> str:
        url = self.target.url
        if isinstance(exc, PublishFault):
            return str(exc)
        if isinstance(exc, JanusGone):
            return f"Janus at {url} went away ({exc})"
        if isinstance(exc, JanusError):
            return f"Janus at {url} refused {exc}"
        if isinstance(exc, TimeoutError):
            return f"Janus at {url} did not answer within {CONNECT_TIMEOUT:g} s"
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"cannot reach Janus at {url}: {reason}"

    async def _publish_once(self) -> str:
        """One attempt; returns why publishing ended (raises why it never began)."""
        t = self.target
        client = self._client = await JanusClient.connect(
            t.url, api_secret=t.api_secret, timeout=CONNECT_TIMEOUT
        )
        handle = await client.attach(VIDEOROOM)
        await self._ensure_room(client, handle)
        join: dict[str, object] = {
            "request": "join",
            "ptype": "publisher",
            "room": t.room,
            "display": t.display,
        }
        if t.room_pin:
            join["pin"] = t.room_pin
        try:
            joined, _ = await client.message(handle, join)
        except JanusError as exc:
            hint = ""
            if exc.code in (429, 433) and "pin" in exc.reason.lower():
                hint = " (the room has a pin: put it in the file [relay] room_pin_file names)"
            raise PublishFault(
                f"Janus at {t.url} refused the publisher in room {t.room}: "
                f"{_janus_words(exc)}{hint}"
            ) from None
        feed = int(joined["id"])
        pc = self._pc = RTCPeerConnection(RTCConfiguration(iceServers=await self._ice_servers()))
        track = PassthroughTrack(
            "video",
            # No IDR at the publisher's own join: it would reach no subscriber and spend the
            # back-off that the first subscriber's PLI (Janus sends one at its webrtcup) needs.
            self._video.subscribe("video→janus", limiter=sfu_keyframe_limiter(), ask_on_join=False),
        )
        self._tracks.append(track)
        video = pc.addTransceiver(track, direction="sendonly")
        video.setCodecPreferences(h264_preferences())
        self._hook_keyframe_requests(video.sender, track)
        if self._audio is not None:
            audio_track = PassthroughTrack("audio", self._audio.subscribe("audio→janus"))
            self._tracks.append(audio_track)
            audio = pc.addTransceiver(audio_track, direction="sendonly")
            audio.setCodecPreferences(opus_preferences())
        connected = asyncio.get_running_loop().create_future()

        @pc.on("connectionstatechange")
        def _state() -> None:
            if not connected.done() and pc.connectionState in ("connected", "failed", "closed"):
                connected.set_result(pc.connectionState)

        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": pc.localDescription.sdp}
        try:
            configured, answer = await client.message(
                handle, {"request": "publish", "display": t.display}, offer
            )
        except JanusError as exc:
            raise PublishFault(
                f"Janus at {t.url} refused the publish in room {t.room}: {_janus_words(exc)}"
            ) from None
        if answer is None:
            raise PublishFault(f"Janus at {t.url} answered the publish without SDP: {configured}")
        if problem := _answer_problem(answer.get("sdp", "")):
            raise PublishFault(f"room {t.room} on {t.url} {problem}")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        except Exception as exc:
            raise PublishFault(
                f"room {t.room} on {t.url}: Janus's answer cannot be applied ({exc}); "
                f"is the room H.264 ({H264_PROFILE})?"
            ) from None
        try:
            async with asyncio.timeout(MEDIA_TIMEOUT):
                outcome = await asyncio.shield(connected)
        except TimeoutError:
            raise PublishFault(
                f"no media path to Janus at {t.url} within {MEDIA_TIMEOUT:g} s "
                "(ICE: is Janus reachable over UDP, or TURN configured in [webrtc]?)"
            ) from None
        if outcome != "connected":
            raise PublishFault(f"the media connection to Janus at {t.url} {outcome}")
        self.publishes += 1
        log.info(
            "relay: publishing to Janus %s room %d as feed %d (%s; %s)",
            t.url,
            t.room,
            feed,
            "first time" if self.publishes == 1 else f"republish #{self.publishes - 1}",
            _path(pc),
        )
        self._set(PublishState.PUBLISHING, None, feed)
        return await self._until_over(client, pc)

    async def _until_over(self, client: JanusClient, pc: RTCPeerConnection) -> str:
        failed = asyncio.get_running_loop().create_future()

        @pc.on("connectionstatechange")
        def _state() -> None:
            if not failed.done() and pc.connectionState in ("failed", "closed"):
                failed.set_result(pc.connectionState)

        wake = asyncio.ensure_future(self._wake.wait())
        try:
            while self._wanted:
                self._wake.clear()
                if wake.done():
                    wake = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait(
                    {client.closed, failed, wake}, return_when=asyncio.FIRST_COMPLETED
                )
                if client.closed in done:
                    how = client.closed.result()
                    return f"Janus at {self.target.url} went away (WebSocket {how})"
                if failed in done:
                    return f"the media connection to Janus at {self.target.url} {failed.result()}"
            return "stopped"
        finally:
            wake.cancel()

    async def _ensure_room(self, client: JanusClient, handle: int) -> None:
        t = self.target
        exists = await client.request(handle, {"request": "exists", "room": t.room})
        if exists.get("exists"):
            codec = await room_videocodec(client, handle, t.room)
            if codec is not None and "h264" not in codec.split(","):
                raise PublishFault(
                    f"room {t.room} on {t.url} takes video {codec}, not H.264: set its "
                    'videocodec = "h264" in janus.plugin.videoroom.jcfg, or pick another '
                    "[relay] room (the device creates it H.264-only)"
                )
            return
        if not t.create_room:
            raise PublishFault(
                f"room {t.room} does not exist on {t.url} and [relay] create_room is false"
            )
        create: dict[str, object] = {
            "request": "create",
            "room": t.room,
            "description": f"peercam {t.display}",
            "videocodec": "h264",
            "h264_profile": H264_PROFILE,
            "audiocodec": "opus",
            "publishers": 3,  # a restarted device republishes before its old feed times out
            "bitrate": t.bitrate,
            "fir_freq": 0,  # keyframes come when subscribers ask (PLI), never on a timer
            "notify_joining": False,
        }
        if t.room_secret:
            create["secret"] = t.room_secret
        if t.room_pin:
            create["pin"] = t.room_pin
        try:
            await client.request(handle, create)
        except JanusError as exc:
            if exc.code == 427:  # created meanwhile (another device, a race)
                return
            raise PublishFault(
                f"Janus at {t.url} refused to create room {t.room}: {_janus_words(exc)}"
            ) from None
        log.info("relay: created room %d on %s (H.264 %s)", t.room, t.url, H264_PROFILE)

    def _hook_keyframe_requests(self, sender: object, track: PassthroughTrack) -> None:
        """Janus's PLIs (one per subscriber) become hub IDR requests through the publisher's
        subscription, so they share one back-off with its join and its falling behind."""

        def on_keyframe_request() -> None:
            self.keyframe_requests_seen += 1
            if track.subscription.request_keyframe("PLI/FIR from Janus"):
                self.keyframe_requests += 1

        sender._send_keyframe = on_keyframe_request  # type: ignore[attr-defined]

    async def _teardown(self) -> None:
        for track in self._tracks:
            track.stop()
        self._tracks.clear()
        pc, self._pc = self._pc, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5)
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _path(pc: RTCPeerConnection) -> str:
    """'host 10.1.0.2 ⇄ host 198.18.3.2' for the selected ICE pair (relay = through TURN)."""
    try:
        ice = pc.getTransceivers()[0].sender.transport.transport
        pair = ice._connection._nominated.get(1)
        local, remote = pair.local_candidate, pair.remote_candidate
        return f"{local.type} {local.host} ⇄ {remote.type} {remote.host}"
    except Exception:
        return "path unknown"


def _janus_words(exc: JanusError) -> str:
    return f"error {exc.code}: {exc.reason}" if exc.code is not None else exc.reason


async def room_videocodec(client: JanusClient, handle: int, room: int) -> str | None:
    """The room's video codecs from ``list`` (None when Janus does not say, e.g. private)."""
    with contextlib.suppress(JanusError, KeyError, TypeError, ValueError):
        listing = await client.request(handle, {"request": "list"})
        for entry in listing.get("list", []):
            if int(entry.get("room", -1)) == room:
                return str(entry.get("videocodec", "")) or None
    return None


def _answer_problem(sdp: str) -> str | None:
    """What in Janus's answer says the room cannot take our video, or None."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:
        return f"sent an unreadable answer ({exc})"
    for media in description.media:
        if media.kind == "video" and (
            media.port == 0
            or media.direction == "inactive"
            or not any(c.mimeType.lower() == "video/h264" for c in media.rtp.codecs)
        ):
            return "rejected H.264 video (is its videocodec something else?)"
    return None
