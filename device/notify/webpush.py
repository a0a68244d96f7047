"""Web Push from the device to dashboards that asked for it (RFC 8030/8291/8292).

The device signs with its own VAPID key (made at first start in the state
folder, or given by ``[notify] vapid_key_file``) and encrypts each message
(aes128gcm) for one browser's subscription; the push service (FCM, Mozilla,
Apple) wakes the dashboard's service worker, which shows the notification
even when no tab is open.

Subscriptions arrive over the protocol (``push-subscribe``), are kept in the
state folder, at most ``max_push_per_viewer`` per viewer (the oldest goes),
and are dropped when the push service says 404/410 (the browser
unsubscribed or the subscription expired), when the viewer unsubscribes, and
when the viewer is no longer in ``viewers_file`` (revoked or removed by
``peercam provision``).  Sends run on a ``SendWorker`` thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..protocol import ErrorCode, ProtocolError
from .worker import Job, SendWorker, Streaks

log = logging.getLogger("peercam.notify")

#: A push message's record is at most 4096 bytes; aes128gcm adds an 86-byte
#: header, a 16-byte tag and a padding delimiter.  Keep the JSON under this.
PAYLOAD_BUDGET = 3_800
MAX_ENDPOINT = 2_048
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- keys -------------------------------------------------------------------------


def load_or_make_vapid(path: Path | None) -> Any:
    """The device's VAPID key (py_vapid.Vapid02): read ``path``, or make and save it.

    ``path`` None: a key for this run only (subscriptions then cannot outlive
    a restart, which the caller logs).
    """
    from py_vapid import Vapid02

    if path is not None and path.is_file():
        try:
            return Vapid02.from_file(str(path))
        except Exception as exc:
            raise ValueError(f"{path}: not a VAPID private key (PEM): {exc}") from None
    vapid = Vapid02()
    vapid.generate_keys()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(vapid.private_pem())
        os.replace(tmp, path)
        log.info("web push: made a VAPID key pair in %s", path)
    return vapid


def public_key_b64(vapid: Any) -> str:
    """The applicationServerKey a browser subscribes with (uncompressed P-256, base64url)."""
    from cryptography.hazmat.primitives import serialization

    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(raw)


# --- subscriptions ------------------------------------------------------------------


@dataclass(slots=True)
class Subscription:
    viewer: str
    endpoint: str
    p256dh: str
    auth: str
    added: float

    def info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    @property
    def origin(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}"


def parse_subscription(viewer: str, obj: object) -> Subscription:
    """A browser's PushSubscription.toJSON(), validated; ProtocolError says what is wrong."""

    def bad(why: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_REQUEST, f"field 'subscription': {why}")

    if not isinstance(obj, dict):
        raise bad("must be an object (PushSubscription.toJSON())")
    endpoint = obj.get("endpoint")
    keys = obj.get("keys")
    if not isinstance(endpoint, str) or not 10 < len(endpoint) <= MAX_ENDPOINT:
        raise bad(f"'endpoint' must be a URL of at most {MAX_ENDPOINT} characters")
    check_endpoint(endpoint)
    if not isinstance(keys, dict):
        raise bad("'keys' must be an object with 'p256dh' and 'auth'")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    try:
        if not isinstance(p256dh, str) or len(p256dh) > 200:
            raise ValueError
        point = b64url_decode(p256dh)
        if len(point) != 65 or point[0] != 4:
            raise ValueError
    except (ValueError, binascii.Error):
        raise bad("'keys.p256dh' must be a base64url P-256 public key (65 bytes)") from None
    try:
        if not isinstance(auth, str) or len(auth) > 64 or len(b64url_decode(auth)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise bad("'keys.auth' must be a base64url 16-byte secret") from None
    return Subscription(viewer, endpoint, p256dh, auth, time.time())


def check_endpoint(endpoint: str) -> None:
    """Push services are public https URLs; plain http only on this machine (tests).

    The device POSTs to whatever a viewer names here, so this is also what
    keeps a viewer from making it poke other hosts over plain http.
    """
    parts = urlsplit(endpoint)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise ProtocolError(
        ErrorCode.BAD_REQUEST,
        "field 'subscription': 'endpoint' must be an https:// push service URL",
    )


class SubscriptionStore:
    """Viewers' subscriptions, in memory and (with a state folder) in a 0600 JSON file."""

    def __init__(self, path: Path | None, per_viewer: int) -> None:
        self.path = path
        self.per_viewer = per_viewer
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))
            self._subs = [Subscription(**row) for row in rows]
        except (OSError, ValueError, TypeError) as exc:
            log.warning(
                "web push: %s unreadable (%s): starting with no subscriptions", self.path, exc
            )
            self._subs = []

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump([asdict(s) for s in self._subs], f)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("web push: cannot save %s: %s (kept in memory)", self.path, exc)

    def all(self) -> list[Subscription]:
        with self._lock:
            return list(self._subs)

    def of(self, viewer: str) -> list[Subscription]:
        with self._lock:
            return [s for s in self._subs if s.viewer == viewer]

    def add(self, sub: Subscription) -> Subscription | None:
        """Store ``sub`` (replacing the same endpoint); returns a subscription it pushed out."""
        with self._lock:
            self._subs = [s for s in self._subs if s.endpoint != sub.endpoint]
            mine = [s for s in self._subs if s.viewer == sub.viewer]
            dropped = None
            if len(mine) >= self.per_viewer:
                dropped = min(mine, key=lambda s: s.added)
                self._subs.remove(dropped)
            self._subs.append(sub)
            self._save()
            return dropped

    def remove(self, *, endpoint: str | None = None, viewer: str | None = None) -> int:
        with self._lock:
            keep = [
                s
                for s in self._subs
                if not (
                    (endpoint is None or s.endpoint == endpoint)
                    and (viewer is None or s.viewer == viewer)
                )
            ]
            gone = len(self._subs) - len(keep)
            if gone:
                self._subs = keep
                self._save()
            return gone

    def keep_only(self, viewers: set[str]) -> list[str]:
        """Drop the subscriptions of viewers not in ``viewers``; returns those viewers."""
        with self._lock:
            gone = sorted({s.viewer for s in self._subs if s.viewer not in viewers})
            if gone:
                self._subs = [s for s in self._subs if s.viewer in viewers]
                self._save()
            return gone


class ViewerList:
    """``[notify] viewers_file``: who may still get pushes, re-read when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self._mtime: float | None = None
        self._viewers: set[str] | None = None

    def current(self) -> set[str] | None:
        """The listed viewers (None: no list configured, everyone granted by the broker)."""
        if self.path is None:
            return None
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                text = self.path.read_text(encoding="utf-8")
                self._viewers = {
                    line.strip()
                    for line in text.splitlines()
                    if line.strip() and not line.startswith("#")
                }
                self._mtime = mtime
        except OSError as exc:
            if self._viewers is None:
                # Not yet installed (an older bundle): no check rather than no pushes.
                if self._mtime != -1.0:
                    log.warning(
                        "web push: cannot read viewers_file %s (%s): not checking grants "
                        "until it exists",
                        self.path,
                        exc.strerror,
                    )
                    self._mtime = -1.0
                return None
        return self._viewers


# --- the payload ----------------------------------------------------------------------


def thumbnail(jpeg: bytes, budget: int) -> bytes | None:
    """A small JPEG of ``jpeg`` whose base64 fits ``budget`` characters (None if none does)."""
    import av

    try:
        decoder = av.CodecContext.create("mjpeg", "r")
        frames = list(decoder.decode(av.Packet(jpeg)))
    except (av.FFmpegError, ValueError) as exc:
        log.debug("web push: snapshot does not decode: %s", exc)
        return None
    if not frames:
        return None
    frame = frames[0]
    for width in (192, 160, 128, 96, 64):
        for quality in (8, 14, 22, 31):
            height = max(2, round(frame.height * width / frame.width / 2) * 2)
            small = frame.reformat(width=width, height=height, format="yuvj420p")
            encoder = av.CodecContext.create("mjpeg", "w")
            encoder.width, encoder.height = width, height
            encoder.pix_fmt = "yuvj420p"
            encoder.time_base = Fraction(1, 25)
            encoder.options = {"qmin": str(quality), "qmax": str(quality)}
            packets = [*encoder.encode(small), *encoder.encode(None)]
            if packets and (len(bytes(packets[0])) + 2) * 4 // 3 + 23 <= budget:
                return bytes(packets[0])
    return None


def fit_payload(message: dict[str, Any], jpeg: bytes | None) -> bytes:
    """``message`` as JSON with the largest thumbnail (data: URL) that keeps it in budget."""
    base = json.dumps(message, separators=(",", ":")).encode()
    if jpeg:
        room = PAYLOAD_BUDGET - len(base) - len(',"image":""')
        small = thumbnail(jpeg, room)
        if small is not None:
            image = "data:image/jpeg;base64," + base64.b64encode(small).decode()
            with_image = json.dumps({**message, "image": image}, separators=(",", ":")).encode()
            if len(with_image) <= PAYLOAD_BUDGET:
                return with_image
    if len(base) > PAYLOAD_BUDGET:
        raise ValueError(f"push message of {len(base)} bytes is over {PAYLOAD_BUDGET}")
    return base


# --- sending ------------------------------------------------------------------------------


class WebPushChannel:
    """Signs, encrypts and sends push messages to every stored subscription."""

    def __init__(
        self,
        *,
        vapid: Any,
        store: SubscriptionStore,
        viewers: ViewerList,
        contact: str,
        timeout: float,
    ) -> None:
        self.vapid = vapid
        self.public_key = public_key_b64(vapid)
        self.store = store
        self.viewers = viewers
        self.contact = contact
        self.timeout = timeout
        self.worker = SendWorker("webpush")
        self.streaks = Streaks()
        self.sent = 0
        self.prune()

    def prune(self) -> None:
        """Drop subscriptions of viewers no longer in viewers_file (revoked/removed)."""
        allowed = self.viewers.current()
        if allowed is None:
            return
        for viewer in self.store.keep_only(allowed):
            log.info(
                "web push: dropped %s's subscriptions: no longer in %s (revoked or removed)",
                viewer,
                self.viewers.path,
            )

    def may_subscribe(self, viewer: str) -> bool:
        allowed = self.viewers.current()
        return allowed is None or viewer in allowed

    def send(
        self, message: dict[str, Any], jpeg: bytes | None, *, ttl: int, urgency: str, topic: str
    ) -> None:
        """Queue ``message`` for every subscription (returns at once)."""
        what = f"{message.get('kind', 'push')} call {message.get('call', '')}"
        self.worker.submit(
            Job(what, lambda: self._send_all(message, jpeg, ttl, urgency, topic, what))
        )

    def _send_all(
        self,
        message: dict[str, Any],
        jpeg: bytes | None,
        ttl: int,
        urgency: str,
        topic: str,
        what: str,
    ) -> None:
        self.prune()
        subs = self.store.all()
        if not subs:
            return
        payload = fit_payload(message, jpeg)  # once for all: the thumbnail costs a decode
        for sub in subs:
            self._send_one(sub, payload, ttl, urgency, topic, what)

    def _send_one(
        self, sub: Subscription, payload: bytes, ttl: int, urgency: str, topic: str, what: str
    ) -> None:
        target = f"{sub.viewer} via {sub.origin}"
        status, why = self.deliver(sub, payload, ttl=ttl, urgency=urgency, topic=topic)
        if status in (404, 410):
            self.store.remove(endpoint=sub.endpoint)
            log.info(
                "web push: %s: the push service says the subscription is gone (%s); dropped",
                target,
                status,
            )
        elif why:
            self.streaks.failed(target, f"{what} not delivered: {why}")
        else:
            self.sent += 1
            self.streaks.succeeded(target)
            log.info("web push: %s sent to %s", what, target)

    def deliver(
        self, sub: Subscription, payload: bytes, *, ttl: int, urgency: str, topic: str
    ) -> tuple[int | None, str]:
        """Send now (blocking, bounded by the timeout): (HTTP status, why it failed or "")."""
        from pywebpush import WebPushException, webpush
        from requests import RequestException

        try:
            response = webpush(
                sub.info(),
                payload.decode(),
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.contact},  # a fresh dict: webpush fills in aud/exp
                ttl=ttl,
                timeout=self.timeout,
                headers={"Urgency": urgency, "Topic": topic},
            )
        except WebPushException as exc:
            status = exc.response.status_code if exc.response is not None else None
            return status, f"refused: HTTP {status}: {exc.message[:200]}"
        except RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return getattr(response, "status_code", None), ""

    def close(self) -> None:
        self.worker.close()
