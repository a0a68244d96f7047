"""The device's MQTT connection: connect, subscribe, deliver, reconnect with backoff.

Sessions must not depend on the broker: media flows peer to peer, so a
broker restart only pauses signaling.  This link reconnects forever with
exponential backoff (with jitter), resubscribes, and calls ``on_connect``
each time so the device republishes its retained ``status``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiomqtt

from .config import MqttConfig

#: TCP_NODELAY for the broker connection (aiomqtt applies it to plain and TLS sockets).
NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

log = logging.getLogger("peercam.mqtt")

# CONNACK return codes (MQTT 3.1.1) that no retry will fix quickly.
_AUTH_CODES = {4: "bad user name or password", 5: "not authorised"}


@dataclass(frozen=True, slots=True)
class LastWill:
    topic: str
    payload: bytes
    retain: bool = True


def describe_mqtt_error(exc: BaseException, cfg: MqttConfig) -> str:
    """A sentence a person can act on, for a failed connection."""
    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    text = str(exc)
    if (
        (isinstance(code, int) and code in _AUTH_CODES)
        or "Not authorized" in text
        or "Bad user" in text
    ):
        reason = _AUTH_CODES.get(code, text) if isinstance(code, int) else text
        return (
            f"broker {cfg.url} refused user {cfg.username!r}: {reason} "
            "(check [mqtt] username and password_file, and the broker's password file)"
        )
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError):
        return (
            f"TLS to {cfg.url} failed: {cause or exc} (is the certificate valid for "
            f"{cfg.host!r}? set [mqtt] ca_file for a private CA)"
        )
    if isinstance(cause, OSError) and cause.strerror:
        return f"cannot reach MQTT broker {cfg.url}: {cause.strerror}"
    errno_text = re.match(r"\[Errno -?\d+\] (.+)", text)
    if errno_text:  # aiomqtt turns OSError into MqttError(str(exc))
        return f"cannot reach MQTT broker {cfg.url}: {errno_text.group(1)}"
    if "Disconnected during message iteration" in text:
        return f"the broker {cfg.url} closed the connection"
    if "timed out" in text.lower():
        return f"MQTT broker {cfg.url} did not answer in time"
    return f"MQTT connection to {cfg.url} failed: {text or type(exc).__name__}"


class MqttLink:
    """Keeps one MQTT session alive and hands incoming messages to ``on_message``."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        client_id: str,
        password: str | None,
        will: LastWill,
        subscriptions: Sequence[str],
        on_message: Callable[[str, bytes], None],
        on_connect: Callable[[], Awaitable[None]],
        on_disconnect: Callable[[], None] | None = None,
        max_backoff: float = 30.0,
        ignore_retained: bool = False,
        retained_ok: Sequence[str] = (),
    ) -> None:
        self._cfg = cfg
        self._client_id = client_id
        self._password = password
        self._will = will
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._max_backoff = max_backoff
        # Viewers' messages are never retained (PROTOCOL.md); a retained one is
        # left over (or planted) and would be replayed at every reconnection.
        self._ignore_retained = ignore_retained
        self._retained_ok = frozenset(retained_ok)  # exact topics exempt from that rule
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.connections = 0
        self.last_error: str | None = None

    def _make_client(self) -> aiomqtt.Client:
        cfg = self._cfg
        tls_context = None
        if cfg.tls:
            tls_context = ssl.create_default_context(cafile=cfg.ca_file or None)
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username or None,
            password=self._password,
            identifier=self._client_id,
            will=aiomqtt.Will(
                self._will.topic, self._will.payload, qos=1, retain=self._will.retain
            ),
            clean_session=True,
            transport="websockets" if cfg.websockets else "tcp",
            websocket_path=cfg.ws_path if cfg.websockets else None,
            keepalive=cfg.keepalive,
            timeout=10,
            tls_context=tls_context,
            max_queued_outgoing_messages=1000,
            logger=logging.getLogger("peercam.mqtt.paho"),
            # No Nagle: signaling is small request/response messages, and paho
            # writes a PUBACK and the reply separately, so the reply would wait
            # for the broker's delayed ACK (~40 ms per answer and welcome).
            socket_options=[NO_DELAY],
        )

    async def connect_once(self, timeout: float = 10.0) -> None:
        """Connect and disconnect once (for ``peercam check``); raises on failure."""
        client = self._make_client()
        async with asyncio.timeout(timeout), client:
            pass

    async def run(self) -> None:
        """Stay connected until cancelled."""
        backoff = 1.0
        attempts = 1
        logged_at = 0.0
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    self.connections += 1
                    backoff = 1.0
                    attempts = 1
                    if self.last_error is not None:
                        log.info("connected to %s again", self._cfg.url)
                    else:
                        log.info("connected to %s as %r", self._cfg.url, self._cfg.username)
                    self.last_error = None
                    for topic in self._subscriptions:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    await self._on_connect()
                    async for message in client.messages:
                        if (
                            message.retain
                            and self._ignore_retained
                            and str(message.topic) not in self._retained_ok
                        ):
                            log.warning(
                                "ignored a retained message on %s: messages to the device are "
                                "never retained (a viewer published it with the retain flag; "
                                "clear it by publishing an empty retained message there)",
                                str(message.topic)[:200],
                            )
                            continue
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            payload = b"" if payload is None else str(payload).encode()
                        try:
                            self._on_message(str(message.topic), bytes(payload))
                        except Exception:
                            log.exception("message handler failed on %s", message.topic)
            except aiomqtt.MqttError as exc:
                message = describe_mqtt_error(exc, self._cfg)
                was_connected = self.connected.is_set()
                self.connected.clear()
                self._client = None
                if was_connected and self._on_disconnect is not None:
                    self._on_disconnect()
                delay = backoff * random.uniform(0.8, 1.2)
                if was_connected:
                    log.warning("lost the broker: %s; reconnecting in %.1f s", message, delay)
                elif message != self.last_error or time.monotonic() - logged_at > 60:
                    failures = f" ({attempts} attempts)" if attempts > 1 else ""
                    log.error("%s%s; retrying in %.1f s", message, failures, delay)
                    logged_at = time.monotonic()
                else:
                    log.debug("%s; retrying in %.1f s", message, delay)
                self.last_error = message
                attempts += 1
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self._max_backoff)
            finally:
                self.connected.clear()
                self._client = None

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Publish with QoS 1; False (and a log line) when the broker is out of reach."""
        client = self._client
        if client is None:
            log.info("broker unreachable: dropped a message for %s", topic)
            return False
        try:
            await client.publish(topic, payload, qos=1, retain=retain, timeout=10)
        except aiomqtt.MqttError as exc:
            log.info("could not publish to %s: %s", topic, exc)
            return False
        return True
