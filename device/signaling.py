"""PROTOCOL.md over MQTT: viewers' messages in, sessions and answers out.

All validation of untrusted input happens at this edge (``protocol``), so
sessions only ever see typed, well-formed requests.  Each viewer gets its
own small inbox processed in order (an offer before its candidates), while
different viewers are served concurrently: one viewer's slow or bad
handshake never delays or disturbs another's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from .calls import CallManager
from .config import WebRtcConfig
from .hub import MediaHub
from .ice import IceServers
from .media import VideoInfo
from .protocol import (
    ALL_SESSIONS,
    Bye,
    ByeReason,
    Candidate,
    Decline,
    DeleteClip,
    ErrorCode,
    Hello,
    Offer,
    Open,
    ProtocolError,
    PushSubscribe,
    PushUnsubscribe,
    QualityChoice,
    Record,
    Reply,
    Topics,
    ViewerMessage,
    bye_message,
    encode,
    error_message,
    parse_viewer_message,
)
from .quality import Quality, QualityPolicy, Stream
from .recording.playback import ClipPlayer
from .recording.recorder import Recorder
from .relay.director import RelayDirector
from .session import Session
from .talkback import Speaker
from .tasks import wait_tasks

log = logging.getLogger("peercam.signaling")

Publish = Callable[[str, bytes, bool], Awaitable[bool]]

INBOX_SIZE = 64  # messages waiting per viewer before it is rate-limited
RATE_BURST = 60.0  # token bucket: burst of messages per viewer ...
RATE_PER_SECOND = 20.0  # ... refilled at this rate
CLOSE_TIMEOUT = 5.0  # seconds a shutdown waits for tasks before abandoning them
MAX_IDLE_INBOXES = 256  # viewer records kept before idle ones are pruned
WILL_GRACE = 1.5  # seconds between a viewer's "bye *" and closing its sessions


class PushHandler(Protocol):
    """Web Push subscriptions (``notify.Notifications``); v1.1 of the protocol."""

    @property
    def push_key(self) -> str | None: ...

    def subscribe(self, viewer: str, subscription: object) -> dict[str, object]: ...

    def unsubscribe(self, viewer: str, endpoint: str) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True)
class DeviceDescription:
    """What ``welcome`` and ``status`` say about this device."""

    name: str
    video: VideoInfo
    audio_codec: str | None
    talkback: bool
    version: str
    substream: VideoInfo | None = None  # v1.1: the second, smaller stream, if the device runs one


class _ViewerInbox:
    """One viewer's ordered message queue, its rate limit and its worker task."""

    def __init__(self, viewer: str) -> None:
        self.viewer = viewer
        self.queue: asyncio.Queue[ViewerMessage] = asyncio.Queue(INBOX_SIZE)
        self.tokens = RATE_BURST
        self.refilled = time.monotonic()
        self.last_rate_error = 0.0
        self.task: asyncio.Task[None] | None = None

    def take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(RATE_BURST, self.tokens + (now - self.refilled) * RATE_PER_SECOND)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Signaling:
    """Turns protocol messages into session actions and session events into messages."""

    def __init__(
        self,
        *,
        topics: Topics,
        webrtc: WebRtcConfig,
        description: DeviceDescription,
        video: MediaHub,
        audio: MediaHub | None,
        ice: IceServers,
        publish: Publish,
        status_extra: Callable[[], dict[str, object]] | None = None,
        calls: CallManager | None = None,
        speaker: Speaker | None = None,
        open_door: Callable[[str], Awaitable[None]] | None = None,
        status_refresh: float = 0.0,
        clips: Recorder | None = None,
        push: PushHandler | None = None,
        video_low: MediaHub | None = None,
        quality_policy: Callable[[], QualityPolicy] = QualityPolicy,
        relay: RelayDirector | None = None,
    ) -> None:
        self.topics = topics
        self.video_low = video_low  # the substream's hub (None: no substream)
        self._quality_policy = quality_policy
        self.webrtc = webrtc
        self.description = description
        self.video = video
        self.audio = audio
        self.ice = ice
        self._publish = publish
        self._status_extra = status_extra
        self.sessions: dict[tuple[str, str], Session] = {}
        # Every session not yet collected, including ones being closed, so a
        # shutdown waits for all peer connections to finish closing.
        self._every_session: weakref.WeakSet[Session] = weakref.WeakSet()
        self._inboxes: dict[str, _ViewerInbox] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # viewers' last wills waiting out WILL_GRACE; a shutdown cancels them
        self._will_graces: set[asyncio.Task[Any]] = set()
        self._status_changed = asyncio.Event()
        self._status_task: asyncio.Task[None] | None = None
        self._closing = False
        self._link_losses = 0
        self.calls = calls
        self.speaker = speaker
        self._open_door = open_door
        self._status_refresh = status_refresh  # seconds; 0 = publish on changes only
        self.clips = clips  # v1.1: recorded clips (record, delete-clip, offers with clip)
        self.push = push
        self.relay = relay  # [relay]: viewers beyond p2p_viewers watch through an SFU

    @property
    def call(self) -> str | None:
        """The ringing or answered call, for ``status``."""
        return self.calls.call if self.calls is not None else None

    # --- entry from MQTT ---------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        """Called by the MQTT link for every message on ``{prefix}/{device}/in/+``."""
        viewer = self.topics.viewer_from_inbox(topic)
        if viewer is None:
            log.warning("ignored a message on %r: not a valid viewer inbox topic", topic[:200])
            return
        if self._closing:
            return
        inbox = self._inboxes.get(viewer)
        if inbox is None:
            if len(self._inboxes) >= MAX_IDLE_INBOXES:
                self._prune_inboxes()
            inbox = self._inboxes[viewer] = _ViewerInbox(viewer)
        if not inbox.take_token():
            self._rate_limited(inbox, f"more than {RATE_PER_SECOND:.0f} messages per second")
            return
        try:
            message = parse_viewer_message(payload)
        except ProtocolError as exc:
            log.info("%s: refused a message: %s (%s)", viewer, exc.message, exc.code)
            self._spawn(self._send_error(viewer, exc))
            return
        try:
            inbox.queue.put_nowait(message)
        except asyncio.QueueFull:
            self._rate_limited(inbox, f"{INBOX_SIZE} messages already waiting")
            return
        if inbox.task is None or inbox.task.done():
            inbox.task = asyncio.get_running_loop().create_task(
                self._serve_inbox(inbox), name=f"peercam-inbox-{viewer}"
            )

    def _prune_inboxes(self) -> None:
        """Forget viewers with nothing in flight (e.g. ones that only ever sent garbage)."""
        for viewer, inbox in list(self._inboxes.items()):
            if (inbox.task is None or inbox.task.done()) and inbox.queue.empty():
                del self._inboxes[viewer]

    def _rate_limited(self, inbox: _ViewerInbox, why: str) -> None:
        now = time.monotonic()
        if now - inbox.last_rate_error < 1.0:
            return  # one error a second is enough; a flood gets no echo
        inbox.last_rate_error = now
        log.warning("%s: rate-limited (%s)", inbox.viewer, why)
        error = ProtocolError(ErrorCode.RATE_LIMITED, f"slow down: {why}")
        self._spawn(self._send_error(inbox.viewer, error))

    async def _serve_inbox(self, inbox: _ViewerInbox) -> None:
        """Handle the viewer's waiting messages in order, then end.

        No task lingers per viewer: ``on_message`` starts a new one when the
        next message comes (the record, with its rate limit, stays).
        """
        while not inbox.queue.empty():
            message = inbox.queue.get_nowait()
            try:
                await self._dispatch(inbox.viewer, message)
            except ProtocolError as exc:
                log.info("%s: %s (%s)", inbox.viewer, exc.message, exc.code)
                await self._send_error(inbox.viewer, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                session = getattr(message, "session", None)
                log.exception(
                    "%s: internal error handling %s", inbox.viewer, type(message).__name__
                )
                await self._send_error(
                    inbox.viewer,
                    ProtocolError(
                        ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}", session
                    ),
                )

    async def _dispatch(self, viewer: str, message: ViewerMessage) -> None:
        match message:
            case Hello(session=session):
                await self._hello(viewer, session)
            case Offer():
                await self._offer(viewer, message)
            case Candidate(session=session, candidate=candidate):
                target = self._session_of(viewer, session)
                await target.add_candidate(candidate)
            case Bye(session=session):
                await self._bye_from_viewer(viewer, session)
            case Decline(call=call):
                if self.calls is None:
                    log.info(
                        "%s declined call %s, but this device has no call button", viewer, call
                    )
                else:
                    self.calls.decline(viewer, call)
            case QualityChoice(session=session, quality=quality):
                target = self._session_of(viewer, session)
                if target.playback is not None:
                    raise ProtocolError(
                        ErrorCode.UNSUPPORTED,
                        "this session plays a recorded clip, which has one stream; "
                        "quality applies to live video",
                        session,
                    )
                target.announce_stream = True
                target.set_quality(Quality(quality))
                await self._send(viewer, target.stream_message())
            case Reply(reply=reply):
                self._reply(viewer, reply)
            case Open():
                if self._open_door is None:
                    raise ProtocolError(ErrorCode.UNSUPPORTED, "this device has no door strike")
                await self._open_door(viewer)
            case PushSubscribe(subscription=subscription):
                if self.push is None:
                    raise ProtocolError(ErrorCode.UNSUPPORTED, "this device does not send Web Push")
                await self._send(viewer, self.push.subscribe(viewer, subscription))
            case PushUnsubscribe(endpoint=endpoint):
                if self.push is None:
                    raise ProtocolError(ErrorCode.UNSUPPORTED, "this device does not send Web Push")
                await self._send(viewer, self.push.unsubscribe(viewer, endpoint))
            case Record():
                clip = self._recorder().record(viewer)
                await self._send(viewer, {"type": "recorded", "clip": clip})
            case DeleteClip(clip=clip):
                await self._recorder().delete_for(viewer, clip)

    def _recorder(self, session: str | None = None) -> Recorder:
        if self.clips is None:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED,
                "this device records no clips ([recording] enabled = false)",
                session,
            )
        return self.clips

    def _reply(self, viewer: str, reply: str) -> None:
        if self.speaker is None or not self.speaker.available:
            raise ProtocolError(ErrorCode.UNSUPPORTED, "this device has no speaker")
        played = self.speaker.play_reply(reply)
        if played is None:
            known = ", ".join(r["id"] for r in self.speaker.replies())
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"no quick reply {reply!r} here (status.replies: {known})"
            )
        log.info("%s: playing quick reply %r (%s)", viewer, played.id, played.text)

    # --- handlers -----------------------------------------------------------------

    def _check_capacity(
        self, viewer: str, session: str, replacing: int = 0, answers_call: bool = False
    ) -> None:
        limit = self.webrtc.max_viewers
        if self.relay is not None and not answers_call:
            limit = self.relay.p2p_limit(limit)
        if len(self.sessions) - replacing >= limit:
            if self.relay is not None and limit < self.webrtc.max_viewers:
                # v1 viewers read a plain busy; v1.1 viewers find where to go in `relay`.
                raise ProtocolError(
                    ErrorCode.BUSY,
                    f"this device serves {limit} viewer(s) peer-to-peer and the rest through "
                    "its SFU relay (Janus): subscribe there as error.relay says (a viewer that "
                    "cannot: try again later)",
                    session,
                    extra={"relay": self.relay.where()},
                )
            raise ProtocolError(
                ErrorCode.BUSY,
                f"this device already serves {len(self.sessions)} of "
                f"{self.webrtc.max_viewers} viewers; try again later",
                session,
            )

    def counts(self) -> tuple[int, int, int, int]:
        """(sessions, handshakes, closing, inboxes) for the resource report."""
        open_ = set(self.sessions.values())
        closing = sum(1 for s in list(self._every_session) if s not in open_)
        return len(open_), self.handshakes(), closing, len(self._inboxes)

    def handshakes(self) -> int:
        """Sessions negotiating now (offer taken, not yet connected)."""
        return sum(not s.connected for s in self.sessions.values())

    def _check_handshakes(self, session: str, leaving: tuple[Session | None, ...]) -> None:
        pending = sum(not s.connected and s not in leaving for s in self.sessions.values())
        if pending >= self.webrtc.max_handshakes:
            raise ProtocolError(
                ErrorCode.BUSY,
                f"{pending} handshakes are already in progress (at most "
                f"{self.webrtc.max_handshakes} at once); try again in a moment",
                session,
            )

    def _session_of(self, viewer: str, session: str) -> Session:
        """The viewer's open session with that id, or ``unknown-session``."""
        target = self.sessions.get((viewer, session))
        if target is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_SESSION, f"no session {session!r} for this viewer", session
            )
        return target

    async def _hello(self, viewer: str, session: str) -> None:
        relayed = (
            self.relay is not None
            and (viewer, session) not in self.sessions
            and self.relay.place(
                viewer,
                session,
                len(self.sessions) - self._replaceable(viewer),
                self.webrtc.max_viewers,
            )
        )
        if not relayed and (viewer, session) not in self.sessions:
            self._check_capacity(viewer, session, replacing=self._replaceable(viewer))
        d = self.description
        welcome: dict[str, object] = {
            "type": "welcome",
            "session": session,
            "ice_servers": self.ice.for_viewer(viewer),
            "ice_ttl": self.ice.ttl,
            "video": d.video.as_message(),
            "audio": {"codec": d.audio_codec} if d.audio_codec else None,
            "talkback": d.talkback,
            **self._push_key(),
            "substream": d.substream.as_message() if d.substream else None,
        }
        if relayed:
            assert self.relay is not None
            welcome["relay"] = self.relay.where()  # v1.1: subscribe there, do not offer
        await self._send(viewer, welcome)

    def _viewer_sessions(self, viewer: str) -> list[Session]:
        return sorted(
            (s for (v, _), s in self.sessions.items() if v == viewer), key=lambda s: s.created
        )

    def _replaceable(self, viewer: str) -> int:
        """1 when a new session of this viewer would replace its oldest one."""
        return int(len(self._viewer_sessions(viewer)) >= self.webrtc.max_sessions_per_viewer)

    async def _offer(self, viewer: str, offer: Offer) -> None:
        if offer.clip is not None:
            # v1.1: play a recorded clip (bounded by [recording] max_playbacks; the
            # clip is loaded before the slot checks below, which must not await)
            player = await self._recorder(offer.session).open_player(offer.clip, offer.session)
            try:
                await self._offer_media(viewer, offer, player)
            finally:
                session = self.sessions.get((viewer, offer.session))
                if session is None or session.playback is not player:
                    player.close()
            return
        await self._offer_media(viewer, offer, None)

    async def _offer_media(self, viewer: str, offer: Offer, player: ClipPlayer | None) -> None:
        ice_servers = await self.ice.device_servers()  # only servers that answer
        key = (viewer, offer.session)
        # Check everything, then take the slot, before any await: meanwhile
        # another viewer's offer could take the slot this one frees or counts
        # on.  A refused offer changes nothing.
        previous = self.sessions.get(key)  # the viewer restarts this session
        replacing = 1 if previous is not None else self._replaceable(viewer)
        if self.relay is not None:
            # A viewer that offers does not subscribe at the SFU (a v1 viewer told to
            # in welcome, or one that is served peer-to-peer after all): no lease.
            self.relay.drop(viewer, offer.session)
        ringing = offer.call is not None and self.call == offer.call
        # A clip plays only peer-to-peer (the SFU carries live video): like an answer,
        # it may use the slots beyond [relay] p2p_viewers, up to max_viewers.
        self._check_capacity(
            viewer, offer.session, replacing=replacing, answers_call=ringing or player is not None
        )
        oldest = self._viewer_sessions(viewer)[0] if replacing and previous is None else None
        self._check_handshakes(offer.session, leaving=(previous, oldest))

        if oldest is not None:
            self._forget(oldest)  # before the claim: it may hold the call
        answers_call = (
            offer.call is not None
            and self.calls is not None
            and self.calls.claim(viewer, offer.session, offer.call)
        )
        session = Session(
            viewer,
            offer.session,
            video=self.video if player is None else player.video_feed,  # type: ignore[arg-type]
            audio=self.audio if player is None else player.audio_feed,  # type: ignore[arg-type]
            ice_servers=ice_servers,
            connect_timeout=self.webrtc.connect_timeout,
            on_end=self._session_ended,
            on_connected=self._session_connected,
            speaker=self.speaker if answers_call else None,
            playback=player,
            # a clip plays as it was recorded: one stream, no quality choice
            video_low=self.video_low if player is None else None,
            quality=Quality(offer.quality or "auto") if player is None else Quality.AUTO,
            policy=self._quality_policy(),
            on_stream=self._session_stream,
        )
        session.announce_stream = offer.quality is not None and player is None
        if offer.quality == "low" and self.video_low is None and player is None:
            log.info("%s: asked for the substream, which this device does not run", session.label)
        # The same session id offering again supersedes the old peer
        # connection (aiortc has no ICE restart), keeping its call if any.
        self.sessions[key] = session  # hold the slot while negotiating
        self._every_session.add(session)
        self._status_changed.set()
        if previous is not None:
            log.info("%s: new offer for an existing session; replacing it", previous.label)
            await previous.close()
        if oldest is not None:
            log.info("%s: %s has too many sessions; replacing the oldest", oldest.label, viewer)
            await self._send(viewer, bye_message(oldest.id, ByeReason.REPLACED))
            await oldest.close()
        try:
            sdp = await session.answer(offer.sdp)
        except BaseException:
            self._forget(session)
            await session.close()
            raise
        if session.closed:  # hung up, replaced or shut down while answering
            log.info("%s: closed while answering; no answer sent", session.label)
            return
        self.ice.note_gathering(ice_servers, session.local_candidate_types())
        await self._send(viewer, {"type": "answer", "session": offer.session, "sdp": sdp})
        if session.announce_stream:
            await self._send(viewer, session.stream_message())
        log.info(
            "%s: answered (%d of %d viewers)%s",
            session.label,
            len(self.sessions),
            self.webrtc.max_viewers,
            f"; call {offer.call}" + (" with talkback" if session.talkback else "")
            if answers_call
            else "",
        )

    async def _bye_from_viewer(self, viewer: str, session: str) -> None:
        if self.relay is not None and session != ALL_SESSIONS:
            self.relay.drop(viewer, session)
        if session == ALL_SESSIONS:
            targets = self._viewer_sessions(viewer)
            if targets or (self.relay is not None and self.relay.has_viewer(viewer)):
                # Usually the viewer's last will.  But a broker that shuts
                # down publishes every client's will before it drops us too:
                # wait a moment, and keep the (peer-to-peer) sessions if our
                # own link went down meanwhile.
                task = self._spawn(
                    self._close_after_will_grace(viewer, targets, self._link_losses),
                    name=f"peercam-will-{viewer}",
                )
                self._will_graces.add(task)
                task.add_done_callback(self._will_graces.discard)
            return
        target = self.sessions.get((viewer, session))
        if target is not None:
            self._forget(target)
            log.info("%s: viewer hung up", target.label)
            await target.close()

    async def _close_after_will_grace(
        self, viewer: str, targets: list[Session], link_losses: int
    ) -> None:
        await asyncio.sleep(WILL_GRACE)
        if self._link_losses != link_losses:
            log.info(
                "%s: ignored its last will: the broker went down at the same moment "
                "(its %d session(s) keep streaming peer to peer)",
                viewer,
                len(targets),
            )
            return
        if self.relay is not None:
            self.relay.drop_viewer(viewer)  # its leases too (relayed sessions)
        live = [t for t in targets if self._forget(t)]
        if live:
            log.info("%s is gone (last will or bye *): closing %d session(s)", viewer, len(live))
        await asyncio.gather(*(t.close() for t in live))

    def link_lost(self) -> None:
        """The MQTT link dropped: wills that arrived just before are the broker's, not deaths."""
        self._link_losses += 1

    def _session_connected(self, session: Session) -> None:
        if self.calls is not None and self.sessions.get((session.viewer, session.id)) is session:
            self.calls.connected(session.viewer, session.id)

    def _session_stream(self, session: Session) -> None:
        """The session now sends the other stream: tell a v1.1 viewer, refresh status."""
        self._status_changed.set()
        if session.announce_stream and self.sessions.get((session.viewer, session.id)) is session:
            self._spawn(self._send(session.viewer, session.stream_message()))

    def substream_viewers(self) -> int:
        """Sessions receiving the substream now (for status)."""
        return sum(s.stream is Stream.SUB for s in self.sessions.values())

    def _session_ended(self, session: Session, reason: ByeReason | None) -> None:
        """A session failed or was closed from the far end."""
        if self._forget(session) and reason is not None and not self._closing:
            log.info("%s: ended (%s)", session.label, reason)
            self._spawn(self._send(session.viewer, bye_message(session.id, reason)))

    def _forget(self, session: Session) -> bool:
        key = (session.viewer, session.id)
        if self.sessions.get(key) is session:
            del self.sessions[key]
            self._status_changed.set()
            if self.calls is not None:
                self.calls.session_ended(session.viewer, session.id)
            return True
        return False

    async def hang_up(self, viewer: str, session_id: str) -> None:
        """End one session from the device's side (the call button during a call)."""
        session = self.sessions.get((viewer, session_id))
        if session is not None:
            await self._end_session(session, ByeReason.HANGUP)

    async def _end_session(self, session: Session, reason: ByeReason) -> None:
        self._forget(session)
        await self._send(session.viewer, bye_message(session.id, reason))
        await session.close()

    # --- output ---------------------------------------------------------------------

    async def _send(self, viewer: str, message: dict[str, object]) -> bool:
        return await self._publish(self.topics.outbox(viewer), encode(message), False)

    async def _send_error(self, viewer: str, exc: ProtocolError) -> None:
        await self._send(
            viewer, {**error_message(exc.code, exc.message, exc.session), **(exc.extra or {})}
        )

    def _spawn(
        self, coro: Coroutine[Any, Any, object], name: str | None = None
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- status ---------------------------------------------------------------------

    def status(self, state: str = "online") -> dict[str, object]:
        d = self.description
        status: dict[str, object] = {
            "type": "status",
            "state": state,
            "name": d.name,
            "viewers": len(self.sessions) if state == "online" else 0,
            "max_viewers": self.webrtc.max_viewers,
            "call": self.call if state == "online" else None,
            "video": d.video.as_message(),
            "audio": {"codec": d.audio_codec} if d.audio_codec else None,
            "version": d.version,
        }
        if state == "online" and self._status_extra is not None:
            status.update(self._status_extra())
        if state == "online":
            status.update(self._push_key())
        return status

    def _push_key(self) -> dict[str, object]:
        key = self.push.push_key if self.push is not None else None
        return {"push_key": key} if key else {}

    def status_changed(self) -> None:
        self._status_changed.set()

    async def publish_status(self) -> None:
        self._status_changed.clear()
        await self._publish(self.topics.status, encode(self.status()), True)

    async def _status_loop(self) -> None:
        while not self._closing:
            try:
                async with asyncio.timeout(self._status_refresh or None):
                    await self._status_changed.wait()
            except TimeoutError:
                pass  # unchanged, but the broker may have lost the retained copy
            await asyncio.sleep(0.05)  # coalesce bursts (four viewers joining at once)
            await self.publish_status()

    def start(self) -> None:
        self._status_task = asyncio.get_running_loop().create_task(
            self._status_loop(), name="peercam-status"
        )

    async def close(self, reason: ByeReason = ByeReason.SHUTDOWN) -> None:
        """Say bye to every viewer, close every session, stop every task."""
        self._closing = True
        # Stop the handlers first: an offer still being answered must not
        # send its answer after the viewer got its bye.
        tasks = [i.task for i in self._inboxes.values() if i.task is not None]
        tasks += self._will_graces  # their sessions are closed below anyway
        if self._status_task is not None:
            tasks.append(self._status_task)
        for task in tasks:
            task.cancel()
        self._status_changed.set()
        sessions = list(self.sessions.values())
        self.sessions.clear()
        if sessions:
            log.info("closing %d session(s): %s", len(sessions), reason)
        await asyncio.gather(
            *(self._send(s.viewer, bye_message(s.id, reason)) for s in sessions),
            return_exceptions=True,
        )
        await asyncio.gather(
            *(s.close() for s in list(self._every_session)), return_exceptions=True
        )
        await wait_tasks([*tasks, *self._tasks], CLOSE_TIMEOUT, log)
        self._inboxes.clear()
