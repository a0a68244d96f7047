"""PROTOCOL.md as code: topics, message types, error codes, validation.

Everything a viewer sends is untrusted.  ``parse_viewer_message`` turns raw
MQTT payload bytes into one typed message or raises ``ProtocolError`` with
the error code and a sentence for the viewer; nothing past this module sees
unvalidated input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from . import PROTOCOL_VERSION

MAX_PAYLOAD = 65_536
VIEWER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
ALL_SESSIONS = "*"


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad-request"
    UNSUPPORTED = "unsupported"
    BUSY = "busy"
    UNKNOWN_SESSION = "unknown-session"
    RATE_LIMITED = "rate-limited"
    INTERNAL = "internal"
    #: peercam addition: the viewer may not do that (e.g. open the door).
    UNAUTHORIZED = "unauthorized"
    #: peercam addition (v1.1, clips): no such clip (never recorded, or deleted).
    UNKNOWN_CLIP = "unknown-clip"


class ByeReason(StrEnum):
    HANGUP = "hangup"
    TIMEOUT = "timeout"
    FAILED = "failed"
    SHUTDOWN = "shutdown"
    REPLACED = "replaced"


class ProtocolError(Exception):
    """A message the device refuses; becomes an ``error`` on the viewer's out topic."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        session: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.session = session
        #: Further fields of the ``error`` message (``relay`` on a ``busy``).
        self.extra = extra


# --- topics -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def inbox_filter(self) -> str:
        return f"{self.base}/in/+"

    @property
    def calls(self) -> str:
        """Retained call log (peercam addition)."""
        return f"{self.base}/calls"

    def snapshot(self, call: str) -> str:
        """Retained JPEG taken when ``call`` rang (peercam addition)."""
        return f"{self.base}/snapshot/{call}"

    def inbox(self, viewer: str) -> str:
        return f"{self.base}/in/{viewer}"

    def outbox(self, viewer: str) -> str:
        return f"{self.base}/out/{viewer}"

    def viewer_from_inbox(self, topic: str) -> str | None:
        """The viewer id an ``in`` topic belongs to, or None if it is not one of ours."""
        head = f"{self.base}/in/"
        if not topic.startswith(head):
            return None
        viewer = topic[len(head) :]
        return viewer if VIEWER_ID_RE.fullmatch(viewer) else None


# --- messages from viewers ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    session: str


@dataclass(frozen=True, slots=True)
class Offer:
    session: str
    sdp: str
    call: str | None = None
    clip: str | None = None  # v1.1: play this recorded clip instead of live video
    quality: str | None = None  # v1.1: "auto", "high" or "low"; None = not sent (auto)


@dataclass(frozen=True, slots=True)
class QualityChoice:
    """v1.1: the viewer picks the stream it gets (``auto``, ``high``, ``low``)."""

    session: str
    quality: str


@dataclass(frozen=True, slots=True)
class IceCandidate:
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True, slots=True)
class Candidate:
    session: str
    candidate: IceCandidate | None  # None = end of candidates


@dataclass(frozen=True, slots=True)
class Bye:
    session: str  # or ALL_SESSIONS
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Decline:
    call: str


@dataclass(frozen=True, slots=True)
class Reply:
    """peercam addition: play a quick reply on the device's speaker."""

    reply: str


@dataclass(frozen=True, slots=True)
class Open:
    """peercam addition: pulse the door strike (answering viewer, if allowed)."""


@dataclass(frozen=True, slots=True)
class PushSubscribe:
    """v1.1: send Web Push for this device to the browser's subscription (checked later)."""

    subscription: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PushUnsubscribe:
    """v1.1: stop sending Web Push to that endpoint."""

    endpoint: str


@dataclass(frozen=True, slots=True)
class Record:
    """peercam addition (v1.1): record a clip now (reason ``manual``)."""


@dataclass(frozen=True, slots=True)
class DeleteClip:
    """peercam addition (v1.1): delete a recorded clip (viewers allowed to)."""

    clip: str


ViewerMessage = (
    Hello
    | Offer
    | Candidate
    | Bye
    | Decline
    | Reply
    | Open
    | PushSubscribe
    | PushUnsubscribe
    | Record
    | DeleteClip
    | QualityChoice
)

DEVICE_TYPES = frozenset(
    {
        "welcome",
        "answer",
        "error",
        "status",
        "call",
        "call-ended",
        "opened",
        "calls",
        "push-subscribed",
        "push-unsubscribed",
        "clips",
        "motion",
        "recorded",
        "stream",
    }
)
QUALITIES = ("auto", "high", "low")
MAX_SDP = 60_000
MAX_CANDIDATE = 1_024


def _clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters: error messages never echo a whole payload."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _session_hint(obj: dict[str, Any]) -> str | None:
    session = obj.get("session")
    if isinstance(session, str) and (SESSION_ID_RE.fullmatch(session) or session == ALL_SESSIONS):
        return session
    return None


_JSON_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): "null",
}


def _json_name(kind: type) -> str:
    return _JSON_NAMES.get(kind, kind.__name__)


def _a(noun: str) -> str:
    """``noun`` with its article: "a string", "an object", "an integer"."""
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _field(obj: dict[str, Any], name: str, kind: type, *, session: str | None) -> Any:
    if name not in obj:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"field {name!r} is missing", session)
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"field {name!r} must be {_a(_json_name(kind))}, got {_json_name(type(value))}",
            session,
        )
    return value


def _session_id(obj: dict[str, Any], *, allow_all: bool = False) -> str:
    session = _field(obj, "session", str, session=None)
    if allow_all and session == ALL_SESSIONS:
        return session
    if not SESSION_ID_RE.fullmatch(session):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "field 'session' must match ^[A-Za-z0-9_-]{8,64}$",
        )
    return session


def _call_id(obj: dict[str, Any], name: str, session: str | None) -> str:
    call = _field(obj, name, str, session=session)
    if not SESSION_ID_RE.fullmatch(call):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"field {name!r} must match ^[A-Za-z0-9_-]{{8,64}}$", session
        )
    return call


def _quality(obj: dict[str, Any], session: str) -> str:
    quality = _field(obj, "quality", str, session=session)
    if quality not in QUALITIES:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"field 'quality' must be one of {', '.join(QUALITIES)}, not {_clip(repr(quality))}",
            session,
        )
    return quality


def _parse_candidate(obj: dict[str, Any], session: str) -> IceCandidate | None:
    if "candidate" not in obj:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "field 'candidate' is missing", session)
    cand = obj["candidate"]
    if cand is None:
        return None
    if not isinstance(cand, dict):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "field 'candidate' must be an object or null", session
        )
    line = _field(cand, "candidate", str, session=session)
    if len(line) > MAX_CANDIDATE:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "candidate line too long", session)
    mid = cand.get("sdpMid")
    index = cand.get("sdpMLineIndex")
    if mid is not None and not isinstance(mid, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'sdpMid' must be a string or null", session)
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "'sdpMLineIndex' must be a non-negative integer", session
        )
    if mid is None and index is None:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "a candidate needs 'sdpMid' or 'sdpMLineIndex'", session
        )
    return IceCandidate(candidate=line, sdp_mid=mid, sdp_mline_index=index)


def parse_viewer_message(payload: bytes) -> ViewerMessage:
    """Validate one payload from a viewer's ``in`` topic.  Raises ProtocolError."""
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD}"
        )
    try:
        obj = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "payload is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"payload is not JSON: {exc.msg} at character {exc.pos}"
        ) from None
    except ValueError as exc:  # e.g. an integer literal over CPython's 4300-digit limit
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"payload is not usable JSON: {_clip(str(exc))}"
        ) from None
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "payload is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "payload must be a JSON object")

    hint = _session_hint(obj)
    if "v" not in obj:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "field 'v' (protocol version) is missing", hint)
    if obj["v"] != PROTOCOL_VERSION or isinstance(obj["v"], bool):
        raise ProtocolError(
            ErrorCode.UNSUPPORTED,
            f"protocol version {_clip(repr(obj['v']))} is not supported; "
            f"this device speaks v{PROTOCOL_VERSION}",
            hint,
        )
    kind = _field(obj, "type", str, session=hint)

    if kind == "hello":
        return Hello(session=_session_id(obj))
    if kind == "offer":
        session = _session_id(obj)
        sdp = _field(obj, "sdp", str, session=session)
        if len(sdp) > MAX_SDP or "m=" not in sdp or not sdp.startswith("v=0"):
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "field 'sdp' is not a session description", session
            )
        call = _call_id(obj, "call", session) if obj.get("call") is not None else None
        clip = _call_id(obj, "clip", session) if obj.get("clip") is not None else None
        if call is not None and clip is not None:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "an offer answers a call or plays a clip, not both", session
            )
        quality = _quality(obj, session) if obj.get("quality") is not None else None
        return Offer(session=session, sdp=sdp, call=call, clip=clip, quality=quality)
    if kind == "quality":
        session = _session_id(obj)
        return QualityChoice(session=session, quality=_quality(obj, session))
    if kind == "candidate":
        session = _session_id(obj)
        return Candidate(session=session, candidate=_parse_candidate(obj, session))
    if kind == "bye":
        session = _session_id(obj, allow_all=True)
        reason = obj.get("reason")
        return Bye(session=session, reason=reason if isinstance(reason, str) else None)
    if kind == "decline":
        return Decline(call=_call_id(obj, "call", hint))
    if kind == "reply":
        reply = _field(obj, "reply", str, session=hint)
        if not VIEWER_ID_RE.fullmatch(reply):
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "field 'reply' must be a reply id from status.replies", hint
            )
        return Reply(reply=reply)
    if kind == "open":
        return Open()
    if kind == "record":
        return Record()
    if kind == "delete-clip":
        return DeleteClip(clip=_call_id(obj, "clip", hint))
    if kind == "push-subscribe":
        return PushSubscribe(subscription=_field(obj, "subscription", dict, session=hint))
    if kind == "push-unsubscribe":
        endpoint = _field(obj, "endpoint", str, session=hint)
        if len(endpoint) > 2048:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "field 'endpoint' is too long", hint)
        return PushUnsubscribe(endpoint=endpoint)
    if kind in DEVICE_TYPES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED, f"type {kind!r} is sent by devices, not viewers", hint
        )
    raise ProtocolError(ErrorCode.UNSUPPORTED, f"unknown message type {_clip(repr(kind))}", hint)


# --- messages to viewers --------------------------------------------------------


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, **msg}, separators=(",", ":")).encode()


def error_message(code: ErrorCode, message: str, session: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    if session is not None:
        msg["session"] = session
    return msg


def bye_message(session: str, reason: ByeReason) -> dict[str, Any]:
    return {"type": "bye", "session": session, "reason": str(reason)}
