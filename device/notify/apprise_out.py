"""Notifications through Apprise: one library for ntfy, Telegram, Pushover, Gotify,
Signal, e-mail, Home Assistant and ~100 more (``[notify] urls``).

Apprise is imported when the first URL is configured (it loads ~275 modules),
and every send runs on the ``SendWorker`` thread with Apprise's own timeout.
Each URL is its own Apprise object, so one failing service is logged by
name (without its secrets) and does not hide another's success.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .worker import Job, SendWorker, Streaks

log = logging.getLogger("peercam.notify")


class NotifyUrlError(ValueError):
    """A [notify] URL Apprise cannot use."""


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    kind: str  # "info" / "warning" (Apprise's notify types)
    jpeg: bytes | None = None
    link: str | None = None
    what: str = ""  # for logs


class AppriseChannel:
    """The configured Apprise URLs and the worker thread that sends to them."""

    def __init__(self, urls: list[str], *, timeout: float) -> None:
        import apprise

        self._apprise = apprise
        # Apprise logs every failure itself; its reasons reach our log through
        # log_callback instead, once per failure streak (worker.Streaks).
        logging.getLogger("apprise").propagate = False
        self.timeout = timeout
        self.targets: list[tuple[str, object]] = []  # (url without secrets, Apprise)
        for url in urls:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
            if plugin is None:
                scheme = url.split("://", 1)[0] if "://" in url else url[:12]
                raise NotifyUrlError(
                    f"[notify] urls: Apprise cannot use a {scheme!r} URL (unknown service or "
                    "malformed; see https://github.com/caronc/apprise/wiki)"
                )
            # Apprise's own socket timeouts bound each request too.
            plugin.socket_connect_timeout = min(timeout, plugin.socket_connect_timeout or timeout)
            plugin.socket_read_timeout = timeout
            one = apprise.Apprise()
            one.add(plugin)
            self.targets.append((plugin.url(privacy=True).split("?", 1)[0], one))
        self.worker = SendWorker("apprise")
        self.streaks = Streaks()
        self.sent = 0

    def send(self, message: Message) -> None:
        """Queue ``message`` for every URL (returns at once)."""
        for name, target in self.targets:
            self.worker.submit(
                Job(f"{message.what} to {name}", lambda n=name, t=target: self._send(n, t, message))
            )

    def _send(self, name: str, target: object, message: Message) -> None:
        ok, why = self.deliver(target, message)
        if ok:
            self.sent += 1
            self.streaks.succeeded(name)
            log.info("notify: %s sent to %s", message.what, name)
        else:
            self.streaks.failed(name, f"{message.what} not delivered: {why}")

    def deliver(self, target: object, message: Message) -> tuple[bool, str]:
        """Send now (blocking, bounded by the timeout): (delivered, why not)."""
        from apprise.attachment.memory import AttachMemory

        body = message.body + (f"\n{message.link}" if message.link else "")
        attach = None
        if message.jpeg:
            attach = self._apprise.AppriseAttachment()
            attach.add(AttachMemory(message.jpeg, name="snapshot.jpg", mimetype="image/jpeg"))
        records: list[str] = []
        ok = target.notify(  # type: ignore[attr-defined]
            body=body,
            title=message.title,
            notify_type=message.kind,
            attach=attach,
            timeout=self.timeout,
            log_callback=lambda entry, _plugin: records.append(
                str(getattr(entry, "message", entry))
            ),
            log_level=logging.WARNING,
        )
        if bool(ok):  # AppriseResult: truthy on success (== True is False)
            return True, ""
        return False, records[-1] if records else "the service refused it or did not answer"

    def close(self) -> None:
        self.worker.close()
