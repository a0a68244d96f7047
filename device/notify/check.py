"""``peercam check`` for ``[notify]``: are the URLs usable, and (``--notify``) do they deliver?

Without ``--notify`` nothing is sent: the URLs are parsed and the Web Push state is
described.  With it, one test notification goes to every Apprise URL and every stored
push subscription, each line saying whether it arrived at the service.  Nothing is
created either: a VAPID key made here as root could not be read by the service.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from ..config import Config, ConfigError
from . import SUBSCRIPTIONS_NAME, VAPID_NAME
from .apprise_out import AppriseChannel, Message, NotifyUrlError
from .webpush import SubscriptionStore, ViewerList, WebPushChannel, load_or_make_vapid

Line = Callable[[bool | str, str], None]


async def check_notify(config: Config, line: Line, *, send: bool) -> int:
    """One line per finding; returns the number of failures."""
    failures = 0
    try:
        urls = config.read_notify_urls()
    except ConfigError as exc:
        line(False, str(exc))
        return 1
    if urls:
        try:
            channel = AppriseChannel(urls, timeout=config.notify.timeout)
        except NotifyUrlError as exc:
            line(False, str(exc))
            return 1
        if not send:
            names = ", ".join(name for name, _ in channel.targets)
            line(True, f"notify: {len(urls)} Apprise URL(s): {names} (--notify sends a test)")
        test = Message(
            title=f"{config.device.name}: test notification",
            body="peercam check --notify: if you read this, rings will reach you here.",
            kind="info",
            what="test",
        )
        for name, target in channel.targets if send else []:
            ok, why = await asyncio.to_thread(channel.deliver, target, test)
            line(ok, f"notify: {name}: " + ("test notification delivered" if ok else why))
            failures += not ok
    failures += await _check_push(config, line, send=send)
    return failures


async def _check_push(config: Config, line: Line, *, send: bool) -> int:
    cfg = config.notify
    if not cfg.web_push:
        return 0
    state = Path(config.call.state_dir) if config.call.state_dir else None
    key = state / VAPID_NAME if state else None
    if cfg.vapid_key_file:
        key = Path(cfg.vapid_key_file)
    if key is None:
        line("warn", "web push: no [call] state_dir: subscriptions last until the daemon restarts")
        return 0
    if not key.is_file():
        line(True, f"web push: the daemon makes its VAPID key {key} at first start")
        return 0
    try:
        vapid = load_or_make_vapid(key)
    except (OSError, ValueError) as exc:
        line(False, f"web push: {exc}")
        return 1
    saved = state / SUBSCRIPTIONS_NAME if state else None
    store = SubscriptionStore(saved, cfg.max_push_per_viewer)
    subs = store.all()
    line(True, f"web push: key {key}, {len(subs)} subscription(s)")
    if not send or not subs:
        return 0
    channel = WebPushChannel(
        vapid=vapid,
        store=store,
        viewers=ViewerList(cfg.viewers_file),
        contact=cfg.push_contact,
        timeout=cfg.timeout,
    )
    payload = json.dumps(
        {
            "v": 1,
            "kind": "test",
            "device": config.device.id,
            "name": config.device.name,
            "title": f"{config.device.name}: test notification",
            "body": "peercam check --notify: rings will reach this browser.",
        }
    ).encode()
    failures = 0
    for sub in subs:
        status, why = await asyncio.to_thread(
            channel.deliver, sub, payload, ttl=60, urgency="normal", topic="peercam-check"
        )
        where = f"web push: {sub.viewer} via {sub.origin}"
        if status in (404, 410):
            line("warn", f"{where}: gone ({status}); the daemon drops it at the next ring")
        else:
            line(not why, f"{where}: " + (why or f"accepted ({status})"))
            failures += bool(why)
    return failures
