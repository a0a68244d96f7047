"""Telling people about a ring when no dashboard is open: Apprise and Web Push.

``Notifications`` lives on the event loop and only ever *hands over* work:
the call machine's events (``ring``, ``snapshot``, ``ended``) become jobs on
worker threads (``worker.SendWorker``).  Nothing here awaits a service, so a
slow or dead one cannot delay a ring, a call or video.

A ring waits for its snapshot at most ``[notify] snapshot_wait`` seconds (a
loop timer, not a sleep) and then goes with or without it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..protocol import ErrorCode, ProtocolError
from .apprise_out import AppriseChannel, Message, NotifyUrlError
from .webpush import (
    SubscriptionStore,
    ViewerList,
    WebPushChannel,
    load_or_make_vapid,
    parse_subscription,
)

log = logging.getLogger("peercam.notify")

VAPID_NAME = "vapid.pem"
SUBSCRIPTIONS_NAME = "push-subscriptions.json"


@dataclass(slots=True)
class _Ring:
    call: str
    at: float
    jpeg: bytes | None = None
    timer: asyncio.TimerHandle | None = None
    sent: bool = False
    pushed: bool = False  # a Web Push ring went out: phones show it until told otherwise
    extra: dict[str, Any] = field(default_factory=dict)


class Notifications:
    """The device's notifications: what to send for which call event, and to whom."""

    def __init__(self, config: Config) -> None:
        self.config = config
        cfg = config.notify
        self.device_id = config.device.id
        self.device_name = config.device.name
        self.events = set(cfg.events)
        self.apprise: AppriseChannel | None = None
        self.push: WebPushChannel | None = None
        self._rings: dict[str, _Ring] = {}
        urls = config.read_notify_urls()
        if urls:
            try:
                self.apprise = AppriseChannel(urls, timeout=cfg.timeout)
            except NotifyUrlError as exc:
                where = f"{config.source_path}: " if config.source_path else ""
                raise ConfigError(f"{where}{exc}") from None
            log.info(
                "notify: %s via %s",
                " and ".join(sorted(self.events)),
                ", ".join(name for name, _ in self.apprise.targets),
            )
        if cfg.web_push:
            state = Path(config.call.state_dir) if config.call.state_dir else None
            key_path = Path(cfg.vapid_key_file) if cfg.vapid_key_file else None
            if key_path is None and state is not None:
                key_path = state / VAPID_NAME
            try:
                vapid = load_or_make_vapid(key_path)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"[notify] web push key: {exc}") from None
            if key_path is None:
                # Not a fault (the demo, a camera nobody subscribes to), but worth knowing:
                # after a restart dashboards must turn "notify me" on again.
                log.info(
                    "web push: no [call] state_dir or [notify] vapid_key_file: the VAPID key "
                    "and push subscriptions last only until the daemon restarts"
                )
            self.push = WebPushChannel(
                vapid=vapid,
                store=SubscriptionStore(
                    state / SUBSCRIPTIONS_NAME if state else None, cfg.max_push_per_viewer
                ),
                viewers=ViewerList(cfg.viewers_file),
                contact=cfg.push_contact,
                timeout=cfg.timeout,
            )

    # --- what viewers see ------------------------------------------------------------

    @property
    def push_key(self) -> str | None:
        """The VAPID public key for ``status``/``welcome`` (None: no Web Push)."""
        return self.push.public_key if self.push is not None else None

    def link(self, call: str | None = None) -> str | None:
        base = self.config.notify.dashboard_url
        if not base:
            return None
        query = f"?call={call}" if call else ""
        return f"{base.split('#', 1)[0].split('?', 1)[0]}{query}#/device/{self.device_id}"

    # --- the protocol: push-subscribe / push-unsubscribe ---------------------------------

    def subscribe(self, viewer: str, subscription: object) -> dict[str, object]:
        if self.push is None:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED, "this device does not send Web Push ([notify] web_push)"
            )
        sub = parse_subscription(viewer, subscription)
        if not self.push.may_subscribe(viewer):
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED, f"viewer {viewer!r} is not granted this device"
            )
        dropped = self.push.store.add(sub)
        if dropped is not None:
            log.info(
                "web push: %s has %d subscriptions; dropped its oldest (%s)",
                viewer,
                self.push.store.per_viewer,
                dropped.origin,
            )
        log.info("web push: %s subscribed (%s)", viewer, sub.origin)
        return {"type": "push-subscribed", "endpoint": sub.endpoint}

    def unsubscribe(self, viewer: str, endpoint: str) -> dict[str, object]:
        if self.push is None:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED, "this device does not send Web Push ([notify] web_push)"
            )
        gone = self.push.store.remove(endpoint=endpoint, viewer=viewer)
        log.info("web push: %s unsubscribed (%d removed)", viewer, gone)
        return {"type": "push-unsubscribed", "endpoint": endpoint}

    # --- call events (on the loop; never blocks) --------------------------------------------

    def ring(self, call: str, at: float) -> None:
        if "ring" not in self.events or (self.apprise is None and self.push is None):
            return
        ring = self._rings[call] = _Ring(call, at)
        wait = self.config.notify.snapshot_wait
        ring.timer = asyncio.get_running_loop().call_later(wait, self._send_ring, call)
        while len(self._rings) > 8:  # calls that never got their snapshot
            self._rings.pop(next(iter(self._rings)))

    def snapshot(self, call: str, jpeg: bytes | None) -> None:
        ring = self._rings.get(call)
        if ring is None or ring.sent:
            return
        ring.jpeg = jpeg
        self._send_ring(call)

    def _send_ring(self, call: str) -> None:
        ring = self._rings.get(call)
        if ring is None or ring.sent:
            return
        ring.sent = True
        if ring.timer is not None:
            ring.timer.cancel()
        when = _clock(ring.at)
        link = self.link(call)
        if self.apprise is not None:
            self.apprise.send(
                Message(
                    title=f"{self.device_name}: someone is at the door",
                    body=f"The call button rang at {when}.",
                    kind="info",
                    jpeg=ring.jpeg,
                    link=link,
                    what=f"ring call {call}",
                )
            )
        if self.push is not None:
            ring.pushed = True
            ttl = max(1, int(self.config.call.ring_timeout))  # a late ring is no use
            self.push.send(
                self._push_message("ring", call, ring.at, link),
                ring.jpeg,
                ttl=ttl,
                urgency="high",
                topic=call,
            )

    def ended(self, call: str, reason: str, by: str | None = None) -> None:
        ring = self._rings.pop(call, None)
        if ring is not None and not ring.sent:
            if ring.timer is not None:
                ring.timer.cancel()
            ring.sent = True  # over before the snapshot came: only the outcome is news
        if reason != "missed" and ring is not None and ring.pushed and self.push is not None:
            # Every phone still shows "someone is at the door": replace it quietly
            # (same tag), or at the push service if still undelivered (same Topic).
            self.push.send(
                self._push_message("ended", call, ring.at, self.link(None), reason=reason, by=by),
                None,
                ttl=max(1, int(self.config.call.ring_timeout)),
                urgency="low",
                topic=call,
            )
        if reason != "missed" or "missed" not in self.events:
            return
        at = ring.at if ring is not None else None
        when = _clock(at) if at else "just now"
        link = self.link(None)
        if self.apprise is not None:
            self.apprise.send(
                Message(
                    title=f"{self.device_name}: missed call",
                    body=f"Nobody answered the ring at {when}.",
                    kind="warning",
                    jpeg=ring.jpeg if ring is not None else None,
                    link=link,
                    what=f"missed call {call}",
                )
            )
        if self.push is not None:
            # Same tag: replaces the ringing notification on the phone; same
            # Topic: replaces it at the push service if still undelivered.
            self.push.send(
                self._push_message("missed", call, at, link),
                None,
                ttl=12 * 3600,
                urgency="normal",
                topic=call,
            )

    def motion(self, at: float, clip: str | None = None) -> None:
        """A motion event started (issue 17); once per visit, as the detector says."""
        if "motion" not in self.events:
            return
        when = _clock(at)
        link = self.link(None)
        title = f"{self.device_name}: motion"
        body = f"Movement at {when}" + (" (a clip is recording)" if clip else "") + "."
        if self.apprise is not None:
            self.apprise.send(
                Message(title=title, body=body, kind="info", jpeg=None, link=link, what="motion")
            )
        if self.push is not None:
            message = {
                "v": 1,
                "kind": "motion",
                "device": self.device_id,
                "name": self.device_name,
                "call": None,
                "at": round(at, 3),
                "title": title,
                "body": body,
                "url": link,
            }
            self.push.send(
                message, None, ttl=600, urgency="normal", topic=f"motion-{self.device_id}"
            )

    def _push_message(
        self,
        kind: str,
        call: str,
        at: float | None,
        link: str | None,
        *,
        reason: str = "",
        by: str | None = None,
    ) -> dict[str, Any]:
        when = _clock(at) if at else ""
        if kind == "ring":
            title, body = f"{self.device_name}: someone is at the door", f"Rang at {when}"
        elif kind == "missed":
            title, body = f"{self.device_name}: missed call", f"Nobody answered at {when}"
        else:
            words = {"answered": "answered", "declined": "declined", "cancelled": "cancelled"}
            title = f"{self.device_name}: {words.get(reason, 'ended')}"
            body = f"The ring at {when} was {words.get(reason, 'ended')}" + (
                f" by {by}" if by else ""
            )
        return {
            "v": 1,
            "kind": kind,
            "device": self.device_id,
            "name": self.device_name,
            "call": call,
            "at": round(at, 3) if at else None,
            "title": title,
            "body": body,
            "url": link,
        }

    def close(self) -> None:
        """Stop the workers (blocking up to a few seconds: run it off the loop)."""
        for ring in self._rings.values():
            if ring.timer is not None:
                ring.timer.cancel()
        for channel in (self.apprise, self.push):
            if channel is not None:
                channel.close()


def _clock(at: float) -> str:
    return dt.datetime.fromtimestamp(at).strftime("%H:%M:%S")
