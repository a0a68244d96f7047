"""One viewer session: one aiortc peer connection sending the hub's streams.

A session negotiates H.264 constrained baseline (and Opus when there is a
microphone), wires hub subscriptions into passthrough tracks, turns the
viewer's PLI/FIR into keyframe requests, and reports how it ended.  It knows
nothing about MQTT: the signaling layer drives it and relays its end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from enum import StrEnum

from aioice.mdns import is_mdns_hostname
from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)
from aiortc.sdp import SessionDescription, candidate_from_sdp

from .hub import MediaHub, Subscription
from .ice_watch import IceWatch, split_offer
from .keyframes import KeyframeRequestLimiter
from .pacing import LinkPacer
from .protocol import ByeReason, ErrorCode, IceCandidate, ProtocolError
from .quality import Quality, QualityPolicy, Stream
from .recording.playback import ClipPlayer
from .talkback import Speaker
from .tracks import PassthroughTrack

log = logging.getLogger("peercam.session")

#: Benchmarks only: "1" sends to every viewer unpaced (aiortc's own behaviour),
#: so ``bench.substream`` can show what pacing buys.  Not a config key on purpose.
NO_PACING_ENV = "PEERCAM_BENCH_NO_PACING"

H264_PROFILE = "42e01f"  # constrained baseline, level 3.1: decodes everywhere, Safari included
MAX_REMOTE_CANDIDATES = 200  # per session (offer SDP plus trickle): browsers send a few dozen
PC_CLOSE_TIMEOUT = 10.0  # seconds aiortc's close() may take before its sockets are shut directly
ICE_CLOSE_TIMEOUT = 2.0  # seconds for that direct shut (a TURN refresh of 0 may go unanswered)


def describe(exc: BaseException, empty: str = "") -> str:
    """An exception as a short phrase, even when its message is empty."""
    return str(exc) or empty or f"{type(exc).__name__} while parsing"


class SessionState(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


def h264_preferences() -> list:
    """aiortc's H.264 constrained-baseline codec (plus RTX) and nothing else."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    h264 = [
        c
        for c in caps
        if c.mimeType.lower() == "video/h264"
        and c.parameters.get("profile-level-id") == H264_PROFILE
        and str(c.parameters.get("packetization-mode")) == "1"
    ]
    rtx = [c for c in caps if c.mimeType.lower() == "video/rtx"]
    return h264 + rtx


def opus_preferences() -> list:
    return [
        c
        for c in RTCRtpSender.getCapabilities("audio").codecs
        if c.mimeType.lower() == "audio/opus"
    ]


def offer_problem(description: SessionDescription) -> str | None:
    """What in the offer aiortc would trip over half-way, or None.

    aiortc fails late on these (a transceiver left without a transport, a
    direction it cannot combine) and may then fail again closing the peer
    connection, leaking its sockets: refuse them before it sees them.
    Every m-line needs its own non-empty mid (RFC 8843), a direction
    attribute (browsers always send one) and a DTLS fingerprint (aiortc
    would assert on its absence when connecting), and a BUNDLE group may
    name only those mids.
    """
    mids = [media.rtp.muxId for media in description.media]
    if not all(mids):
        return "every m-line needs an a=mid"
    if len(set(mids)) != len(mids):
        return "two m-lines share one a=mid"
    for group in description.group:
        if group.semantic == "BUNDLE" and not {str(i) for i in group.items} <= set(mids):
            return "the BUNDLE group names an a=mid no m-line has"
    for media in description.media:
        if media.kind in ("audio", "video") and media.direction is None:
            return f"the {media.kind} m-line has no direction (a=recvonly, a=sendrecv, ...)"
        if media.dtls is None or not media.dtls.fingerprints:
            return f"the {media.kind} m-line has no DTLS a=fingerprint"
    return None


class Session:
    """A viewer's peer connection, from offer to close."""

    def __init__(
        self,
        viewer: str,
        session_id: str,
        *,
        video: MediaHub,
        audio: MediaHub | None,
        ice_servers: list[RTCIceServer],
        connect_timeout: float,
        on_end: Callable[[Session, ByeReason | None], None],
        on_connected: Callable[[Session], None] | None = None,
        speaker: Speaker | None = None,
        playback: ClipPlayer | None = None,
        video_low: MediaHub | None = None,
        quality: Quality = Quality.AUTO,
        policy: QualityPolicy | None = None,
        on_stream: Callable[[Session], None] | None = None,
    ) -> None:
        self.viewer = viewer
        self.id = session_id
        self.label = f"{viewer}/{session_id[:12]}"
        self._video_hub = video
        self._video_low = video_low  # the substream's hub; None = the device runs none
        self._audio_hub = audio
        self.quality = quality
        self.policy = policy or QualityPolicy()
        self._on_stream = on_stream
        #: The stream being sent now, and the one a switch is under way to.
        self.stream = Stream.MAIN
        self._switching_to: Stream | None = None
        # one back-off per encoder: switching back and forth cannot spray IDRs
        self._limiters = {
            Stream.MAIN: KeyframeRequestLimiter(),
            Stream.SUB: KeyframeRequestLimiter(),
        }
        self._video_track: PassthroughTrack | None = None
        #: The viewer understands ``stream`` messages (it sent ``quality``: v1.1).
        self.announce_stream = False
        #: What this viewer's link takes bounds what is sent to it (pacing.py).
        self.pacer = LinkPacer()
        self._connect_timeout = connect_timeout
        self._on_end = on_end
        self._on_connected = on_connected
        self._speaker = speaker  # set only for the session that answered a call
        self._talkback_task: asyncio.Task[None] | None = None
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
        self._tracks: list[PassthroughTrack] = []
        self._timer: asyncio.TimerHandle | None = None
        self._close_task: asyncio.Task[None] | None = None
        self.state = SessionState.NEW
        self.created = time.monotonic()
        self.connected_at: float | None = None
        self.keyframe_requests = 0
        self.remote_candidates = 0  # in the offer plus trickled
        self._resolving: set[asyncio.Task[None]] = set()  # mDNS candidates being resolved
        self.ice_watch = IceWatch(self.label)  # what ICE saw, for the log when it fails
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._pc.on("track", self._on_track)
        #: v1.1: a clip played instead of live (``video``/``audio`` are its feeds).
        self.playback = playback
        if playback is not None:
            self._pc.on("datachannel", self._on_datachannel)

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def connected(self) -> bool:
        return self.state is SessionState.CONNECTED

    # --- negotiation -------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Apply the viewer's offer; return the complete answer SDP (all candidates in).

        A session closed while this runs returns ``""`` and stays closed (check
        ``closed``: the viewer has had its ``bye``).  Raises ProtocolError
        (``unsupported`` for an offer that cannot take H.264, ``bad-request``
        for an unreadable one).
        """
        try:
            description = SessionDescription.parse(offer_sdp)
            offered = description.media
            kinds = [media.kind for media in offered]
        except Exception as exc:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"unreadable offer SDP: {describe(exc)}", self.id
            ) from None
        if problem := offer_problem(description):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"unusable offer SDP: {problem}", self.id)
        candidates = sum(len(media.ice_candidates) for media in offered)
        if candidates > MAX_REMOTE_CANDIDATES:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"the offer has {candidates} ICE candidates; at most "
                f"{MAX_REMOTE_CANDIDATES} are accepted",
                self.id,
            )
        self.remote_candidates = candidates
        for media in offered:
            for c in media.ice_candidates:
                if not 0 < c.port < 65536:
                    raise ProtocolError(
                        ErrorCode.BAD_REQUEST,
                        f"unusable offer SDP: ICE candidate port {c.port} is not 1-65535",
                        self.id,
                    )
        if "video" not in kinds:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED, "the offer has no video m-line to receive H.264", self.id
            )
        pc = self._pc
        if self.quality is Quality.LOW and self._video_low is not None:
            self.stream = Stream.SUB
        self.policy.stream = self.stream
        fps = max(1, getattr(getattr(self._video_hub.source, "info", None), "fps", 30))
        video_track = PassthroughTrack(
            "video",
            self._subscribe(self.stream),
            frame_interval_us=round(1_000_000 / fps),
            on_switched=self._switched,
        )
        self._video_track = video_track
        self._tracks.append(video_track)
        video = pc.addTransceiver(video_track, direction="sendonly")
        video.setCodecPreferences(h264_preferences())
        audio: RTCRtpTransceiver | None = None
        viewer_sends_audio = any(
            m.kind == "audio" and m.direction in ("sendrecv", "sendonly") for m in offered
        )
        talkback = self._speaker is not None and viewer_sends_audio
        if not talkback:
            self._speaker = None
        if "audio" in kinds and (self._audio_hub is not None or talkback):
            if self._audio_hub is not None:
                audio_track = PassthroughTrack(
                    "audio", self._audio_hub.subscribe(f"audio→{self.label}")
                )
                self._tracks.append(audio_track)
                audio = pc.addTransceiver(
                    audio_track, direction="sendrecv" if talkback else "sendonly"
                )
            else:
                audio = pc.addTransceiver("audio", direction="recvonly")
            audio.setCodecPreferences(opus_preferences())
        self._hook_keyframe_requests(video.sender, video_track)
        self._hook_receiver_reports(video.sender, video_track)

        # The viewer's mDNS candidates are resolved after the answer is out and its
        # end-of-candidates never reaches aioice (see ice_watch.split_offer).
        offer_for_aiortc, mdns_candidates, ended = split_offer(offer_sdp)
        self.ice_watch.end_of_candidates = ended
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_for_aiortc, type="offer"))
        except Exception as exc:
            if self.closed:  # closed meanwhile: nobody waits for an answer or an error
                return ""
            text = str(exc)
            if "Failed to set remote video description" in text or "codec" in text.lower():
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED,
                    "the offer's video cannot take H.264 constrained baseline "
                    f"(profile-level-id {H264_PROFILE}, packetization-mode 1)",
                    self.id,
                ) from None
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"unreadable offer SDP: {describe(exc)}",
                self.id,
            ) from None
        if video.mid is None:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED, "the offer has no video m-line to receive H.264", self.id
            )
        # Never receive what nobody plays: extra m-lines the viewer offered
        # (a second video, audio without a speaker) are made inactive, so
        # aiortc runs no decoder and queues nothing for them.
        for transceiver in pc.getTransceivers():
            if transceiver is not video and transceiver is not audio:
                transceiver.direction = "inactive"

        if self.closed:
            return ""
        self.ice_watch.attach(self._ice_connection())
        for taken in mdns_candidates:
            try:
                ice = candidate_from_sdp(taken.line.removeprefix("candidate:"))
            except (AssertionError, ValueError, IndexError):
                continue  # aiortc would have refused it in the SDP as well
            ice.sdpMid = taken.mid
            ice.sdpMLineIndex = taken.mline_index
            self._resolve_in_background(ice)
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            if self.closed:
                await self._close_ice_directly()
                return ""
            # Whatever else in a viewer's SDP trips aiortc: that viewer's problem.
            log.warning(
                "%s: aiortc could not answer this offer: %s: %s",
                self.label,
                type(exc).__name__,
                exc,
            )
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"the device cannot answer this offer SDP: {describe(exc)}",
                self.id,
            ) from None
        if self.closed:
            # Closed while gathering candidates (a hang-up, a replacement, a
            # shutdown).  aioice adds a TURN allocation to its connection when
            # gathering ends, even after close(): release it now, or its socket
            # and refresh task live on.  The caller sees ``closed`` and sends
            # nothing.
            await self._close_ice_directly()
            return ""
        self.state = SessionState.CONNECTING
        if os.environ.get(NO_PACING_ENV) != "1":
            self._install_pacer(video.sender)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._connect_timeout, self._connect_timed_out)
        return pc.localDescription.sdp

    async def add_candidate(self, candidate: IceCandidate | None) -> None:
        if self.closed:
            return
        if candidate is None:
            # Not passed on: aioice would then fail the session as soon as its own
            # check list is empty or failed, while the viewer's checks to the
            # device's addresses (peer-reflexive candidates, the only way in when
            # its mDNS names cannot be resolved) may still be on their way.  The
            # connect timeout is the one deadline.
            self.ice_watch.end_of_candidates = True
            return
        line = candidate.candidate.strip()
        if not line:  # browsers send "" to mean end-of-candidates for a section
            return
        if self.remote_candidates >= MAX_REMOTE_CANDIDATES:
            # aioice keeps (and checks) every candidate: a viewer may not add them forever.
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"too many ICE candidates for this session (at most {MAX_REMOTE_CANDIDATES})",
                self.id,
            )
        try:
            ice = candidate_from_sdp(line.removeprefix("a=").removeprefix("candidate:"))
        except (AssertionError, ValueError, IndexError) as exc:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"unreadable ICE candidate: {describe(exc, 'too few fields')}",
                self.id,
            ) from None
        if not 0 < ice.port < 65536:
            # aioice would take it and then kill its own socket sending a check there.
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"unreadable ICE candidate: port {ice.port} is not 1-65535",
                self.id,
            )
        ice.sdpMid = candidate.sdp_mid
        ice.sdpMLineIndex = candidate.sdp_mline_index
        if is_mdns_hostname(ice.ip):
            self._resolve_in_background(ice)
            await asyncio.sleep(0)  # let its first step run: the query goes out now
        else:
            try:
                await self._pc.addIceCandidate(ice)
            except Exception as exc:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST, f"ICE candidate refused: {describe(exc)}", self.id
                ) from None
        self.remote_candidates += 1

    def _resolve_in_background(self, ice: RTCIceCandidate) -> None:
        """Add an mDNS candidate (``<uuid>.local``) without holding up the viewer's messages.

        Browsers hide LAN addresses behind mDNS names; aioice resolves each
        one, waiting up to a second when nobody answers (multicast blocked).
        The viewer's next messages (more candidates, bye) and the answer (for
        names in the offer) need not wait for that; a name nobody answers for
        is only logged (the viewer's checks still find the path, see
        ``add_candidate``).
        """

        async def add() -> None:
            try:
                await self._pc.addIceCandidate(ice)
            except Exception as exc:
                log.info("%s: ICE candidate %s refused: %s", self.label, ice.ip, describe(exc))
                return
            address = self.ice_watch.mdns_outcome(ice.ip)
            log.debug(
                "%s: the viewer's mDNS name %s %s",
                self.label,
                ice.ip,
                f"is {address}" if address else "was not resolved (no multicast answer)",
            )

        task = asyncio.get_running_loop().create_task(add(), name=f"peercam-mdns-{self.label}")
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    @property
    def talkback(self) -> bool:
        """True when this session's audio plays on the device's speaker."""
        return self._speaker is not None

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self._speaker is None or self._talkback_task is not None:
            return
        self._talkback_task = asyncio.get_running_loop().create_task(
            self._speaker.play_track(track, self.label), name=f"peercam-talkback-{self.label}"
        )
        self._talkback_task.add_done_callback(self._talkback_done)

    def _talkback_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("%s: talkback stopped: %s: %s", self.label, type(exc).__name__, exc)

    # --- keyframes ----------------------------------------------------------------

    def _on_datachannel(self, channel: object) -> None:
        if self.playback is not None and getattr(channel, "label", "") == "playback":
            self.playback.attach(channel)

    def _hook_keyframe_requests(self, sender: RTCRtpSender, track: PassthroughTrack) -> None:
        """aiortc turns PLI/FIR into a flag for its own encoder; we have none, so ask the hub.

        Through the subscription being sent, so the viewer's PLI/FIR share one
        back-off with its join and its falling behind.
        """

        def on_keyframe_request() -> None:
            if track.subscription.request_keyframe(f"PLI/FIR from {self.label}"):
                self.keyframe_requests += 1

        sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]

    def _install_pacer(self, video_sender: RTCRtpSender) -> None:
        """Every RTP packet of this session through its ``LinkPacer``; NACKs through its gate."""
        transports = {}
        for transceiver in self._pc.getTransceivers():
            dtls = transceiver.sender.transport
            if dtls is not None:
                transports[id(dtls)] = dtls
        pacer = self.pacer
        for dtls in transports.values():
            forward = dtls._send_rtp

            async def paced(data: bytes, forward=forward) -> None:  # type: ignore[no-untyped-def]
                await pacer.send(data, forward)

            dtls._send_rtp = paced
        retransmit = video_sender._retransmit

        async def gated_retransmit(sequence_number: int) -> None:
            if pacer.may_retransmit(sequence_number):
                await retransmit(sequence_number)

        video_sender._retransmit = gated_retransmit  # type: ignore[method-assign]

    def _hook_receiver_reports(self, sender: RTCRtpSender, track: PassthroughTrack) -> None:
        """The viewer's REMB and loss reports: to the hub being sent, and to the quality policy.

        REMB goes to the hub of the stream this viewer receives (an encoder
        follows only its own viewers).  aiortc hands REMB only to its own
        encoder; the hook sees every RTCP packet routed to this sender first,
        then lets aiortc handle it.
        """
        handle = sender._handle_rtcp_packet

        async def handle_reports(packet: object) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass  # another PSFB APP message, not REMB
                else:
                    if sender._ssrc in ssrcs:
                        subscription = track.subscription
                        subscription.hub.report_bandwidth(subscription, bitrate)
                        self.pacer.on_estimate(bitrate, subscription.hub.recent_bitrate())
                        self._decide(
                            self.policy.on_estimate(bitrate, self._video_hub.recent_bitrate())
                        )
            elif isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                for report in packet.reports:
                    if report.ssrc == sender._ssrc:
                        self.pacer.on_loss(report.fraction_lost / 256)
                        self._decide(self.policy.on_loss(report.fraction_lost / 256))
            await handle(packet)  # type: ignore[arg-type]

        sender._handle_rtcp_packet = handle_reports  # type: ignore[method-assign]

    # --- which stream -------------------------------------------------------------

    @property
    def has_substream(self) -> bool:
        return self._video_low is not None

    def _subscribe(self, stream: Stream) -> Subscription:
        hub = self._video_low if stream is Stream.SUB else self._video_hub
        assert hub is not None
        suffix = " (substream)" if stream is Stream.SUB else ""
        return hub.subscribe(f"video→{self.label}{suffix}", limiter=self._limiters[stream])

    def _decide(self, stream: Stream | None) -> None:
        """The policy's advice (``auto`` only)."""
        if stream is None or self.quality is not Quality.AUTO or self._video_low is None:
            return
        self._move(stream, "auto")

    def _move(self, stream: Stream, why: str) -> None:
        track = self._video_track
        if track is None or self.closed:
            return
        target = self._switching_to or self.stream
        if stream is target:
            return
        if stream is self.stream:  # back to what is being sent: drop the switch under way
            track.cancel_switch()
            self._switching_to = None
            self.policy.moved(stream)
            return
        self._switching_to = stream
        self.policy.moved(stream)
        log.info("%s: switching to the %s stream (%s)", self.label, stream, why)
        track.switch_to(self._subscribe(stream))

    def _switched(self, subscription: Subscription) -> None:
        stream = Stream.SUB if subscription.hub is self._video_low else Stream.MAIN
        self.stream = stream
        self._switching_to = None
        self.pacer.forget_before_switch()
        log.info("%s: now sending the %s stream", self.label, stream)
        if self._on_stream is not None:
            self._on_stream(self)

    def set_quality(self, quality: Quality) -> None:
        """The viewer's choice: ``high``/``low`` pin a stream, ``auto`` lets the policy decide."""
        if quality is Quality.LOW and self._video_low is None:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED,
                "this device runs no substream ([camera] substream is off); "
                "it sends the main stream",
                self.id,
            )
        self.quality = quality
        if quality is Quality.HIGH:
            self._move(Stream.MAIN, "the viewer chose high")
        elif quality is Quality.LOW:
            self._move(Stream.SUB, "the viewer chose low")

    def stream_message(self) -> dict[str, object]:
        """The ``stream`` message (PROTOCOL.md v1.1): what this viewer is sent now."""
        hub = self._video_low if self.stream is Stream.SUB else self._video_hub
        info = getattr(hub.source, "info", None) if hub is not None else None
        message: dict[str, object] = {
            "type": "stream",
            "session": self.id,
            "stream": str(self.stream),
            "quality": str(self.quality),
            "substream": self._video_low is not None,
        }
        if info is not None:
            message.update(width=info.width, height=info.height, fps=info.fps)
        return message

    # --- life ---------------------------------------------------------------------

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        log.debug("%s: connection %s", self.label, state)
        if state == "connected" and self.state is SessionState.CONNECTING:
            self.state = SessionState.CONNECTED
            self.connected_at = time.monotonic()
            if self._timer is not None:
                self._timer.cancel()
            log.info(
                "%s: connected in %.0f ms (%s)",
                self.label,
                (self.connected_at - self.created) * 1000,
                self.path_description(),
            )
            if self._on_connected is not None:
                self._on_connected(self)
        elif state == "failed" and not self.closed:
            log.warning(
                "%s: ICE/DTLS failed (viewer unreachable or gone): %s",
                self.label,
                self.ice_watch.report(),
            )
            self._end(ByeReason.FAILED)
        elif state == "closed" and not self.closed:
            # aiortc says "closed" both when the viewer closed its peer
            # connection (DTLS close_notify: a hang-up) and when ICE consent
            # expired (the viewer's network is gone: a failure).
            if self._ice_failed():
                log.warning("%s: ICE consent expired (viewer unreachable or gone)", self.label)
                self._end(ByeReason.FAILED)
            else:
                self._end(ByeReason.HANGUP)

    def _ice_failed(self) -> bool:
        for transceiver in self._pc.getTransceivers():
            dtls = transceiver.sender.transport
            if dtls is not None and dtls.transport.state == "failed":
                return True
        return False

    def _connect_timed_out(self) -> None:
        if self.state is not SessionState.CONNECTED and not self.closed:
            log.warning(
                "%s: not connected after %.0f s; closing: %s",
                self.label,
                self._connect_timeout,
                self.ice_watch.report(),
            )
            self._end(ByeReason.FAILED)

    def _end(self, reason: ByeReason) -> None:
        """The session ended by itself: close it and tell the owner (who says bye)."""
        if self._close_task is None:
            self._start_close()
            self._on_end(self, reason)

    def _ice_connection(self) -> object | None:
        """The aioice connection under the (bundled) transports, once they exist."""
        for transceiver in self._pc.getTransceivers():
            dtls = transceiver.sender.transport
            if dtls is not None:
                return dtls.transport._connection
        return None

    def path_description(self) -> str:
        """'host 127.0.0.1 ⇄ host 127.0.0.1' for the selected ICE pair, when known."""
        try:
            transceiver = self._pc.getTransceivers()[0]
            ice = transceiver.sender.transport.transport  # RTCIceTransport
            pair = ice._connection._nominated.get(1)  # aioice CandidatePair
            if pair is None:
                return "path unknown"
            local, remote = pair.local_candidate, pair.remote_candidate
            return f"{local.type} {local.host} ⇄ {remote.type} {remote.host}"
        except Exception:
            return "path unknown"

    def local_candidate_types(self) -> set[str]:
        """Types of the local ICE candidates gathered for the answer (host, srflx, relay)."""
        types: set[str] = set()
        for transceiver in self._pc.getTransceivers():
            try:
                gatherer = transceiver.sender.transport.transport.iceGatherer
            except AttributeError:
                continue
            types.update(c.type for c in gatherer.getLocalCandidates())
        return types

    def _start_close(self) -> asyncio.Task[None]:
        if self._close_task is None:
            self.state = SessionState.CLOSED
            if self._timer is not None:
                self._timer.cancel()
            for track in self._tracks:
                track.stop()
            if self.playback is not None:
                self.playback.close()
            if self._talkback_task is not None:
                self._talkback_task.cancel()
            for task in self._resolving:
                task.cancel()
            self._close_task = asyncio.get_running_loop().create_task(
                self._close_peer_connection(), name=f"peercam-close-{self.label}"
            )
        return self._close_task

    async def _close_peer_connection(self) -> None:
        try:
            await asyncio.wait_for(self._pc.close(), PC_CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning(
                "%s: peer connection did not close within %g s; shutting its sockets directly",
                self.label,
                PC_CLOSE_TIMEOUT,
            )
            await self._close_ice_directly()
        except Exception:
            log.exception("%s: peer connection did not close cleanly", self.label)
            await self._close_ice_directly()
        log.debug("%s: closed", self.label)

    async def _close_ice_directly(self) -> None:
        """Close the ICE agents (their UDP/TCP sockets and TURN allocations) under aiortc.

        A ``close()`` stuck in a sender or the SCTP association would otherwise
        leave the sockets, and their file descriptors, open for good.
        """
        # the transceivers' ICE transports (under BUNDLE, one shared by all)
        connections = set()
        for transceiver in self._pc.getTransceivers():
            dtls = transceiver.sender.transport
            if dtls is not None:  # None only for a transceiver aiortc never wired up
                connections.add(dtls.transport._connection)
        for connection in connections:
            try:
                await asyncio.wait_for(connection.close(), ICE_CLOSE_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "%s: ICE sockets did not close within %g s", self.label, ICE_CLOSE_TIMEOUT
                )
            except Exception as exc:
                log.warning(
                    "%s: ICE sockets did not close: %s", self.label, exc or type(exc).__name__
                )

    async def close(self) -> None:
        """Close the peer connection and release hub subscriptions. Idempotent.

        The closing itself runs in a task of its own that a cancelled caller
        does not interrupt: aiortc's ``close()`` shares one future between
        concurrent callers, and cancelling one of them would break the other.
        """
        await asyncio.shield(self._start_close())
