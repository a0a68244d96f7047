"""An MQTT broker inside the demo process, for ``peercam demo`` and tests.

Why amqtt: it is pure Python (``pip install`` works on any laptop and on a Pi,
no Mosquitto to install or configure), it is asyncio-native so it runs in the
*same event loop* as the daemon (one process, one Ctrl+C, no threads), and
it serves both plain TCP (for the daemon, through aiomqtt) and
MQTT-over-WebSockets (for the browser, through mqtt.js).  It speaks MQTT
3.1.1 only, which is all the protocol needs; production uses Mosquitto.

This is for demos on localhost: anonymous access, no ACLs, no TLS.  Never
bind it to a public address.

What amqtt 0.12 does, read from its source, and how this module copes:

- Port 0 binds fine (``asyncio.start_server`` / ``websockets.serve``), but
  amqtt does not report the port it got; we read it from the listening
  sockets of its listener objects (a private attribute, checked loudly).
- The WebSocket listener accepts any request path and requires the ``mqtt``
  subprotocol, which mqtt.js sends by default for MQTT 3.1.1; the URL we
  hand out uses the conventional ``/mqtt`` path.
- It never drops a client whose keep-alive expired (the handler's read
  timeout is a no-op), so a client that vanished without closing its socket
  kept its session and its last will never went out.  Fixed: an expired
  keep-alive closes the session (and sends the will).  Its keep-alive is also
  exact (the spec allows 1.5x), so ``timeout_disconnect_delay`` adds grace
  for browsers whose timers are throttled in background tabs.
- On every CONNECT it sent the new client every retained message matching
  *any* client's subscription (a device got viewers' retained topics, a
  viewer every device's status).  Fixed: retained messages go only to
  sessions that hold the matching subscription.
- It decides about a last will on the first sign that a connection ended,
  even when a DISCONNECT from that client is already read but not yet
  processed: a failed write to a socket the client just closed (a PUBACK for
  its last PUBLISH) wins over the DISCONNECT and the will goes out.  Plain
  0.12 can meet this over TCP when the reset arrives first (not observed
  here); once WebSocket write errors count as "connection lost" (next point)
  it happened on every browser tab close (publish ``bye``, DISCONNECT, close), and a
  viewer's will ``bye "*"`` ends that viewer's sessions in its other tabs.
  Fixed: DiscardWillOnDisconnect and ``_Broker._handle_disconnect``.
- A WebSocket client that goes away while a message is on its way made
  amqtt log WARNINGs, "Task exception was never retrieved" and ERROR
  tracebacks (websockets' ConnectionClosed was not handled like a reset TCP
  connection).  Fixed in ``_WebSocketsWriter``.
- Its default plugins log every packet and publish ``$SYS`` topics every
  20 s; we load only anonymous authentication (and our fix).
- It forwards each message at the *subscription's* QoS rather than the
  minimum of publish and subscription QoS; harmless here (everything in
  PROTOCOL.md is QoS 1).
- Retained messages and last wills (including retained wills) then work as
  the protocol needs; ``tests/test_demo_parts.py`` checks them and each fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from amqtt.adapters import WebSocketsReader, WebSocketsWriter
from amqtt.broker import Broker
from amqtt.errors import BrokerError
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.plugins.base import BasePlugin
from amqtt.session import Session
from websockets import ConnectionClosed
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

log = logging.getLogger("peercam.embedded_broker")

#: Loggers amqtt (and the libraries under it) write to; chatty at INFO.
_NOISY_LOGGERS = ("amqtt", "transitions", "websockets.server")

#: Extra seconds past a client's keep-alive before amqtt drops it (see module docstring).
KEEPALIVE_GRACE_S = 30

#: Longest a last will waits for the client's remaining bytes (a DISCONNECT among them).
WILL_GRACE_S = 0.5

#: The path handed out in ``ws_url``; amqtt accepts any path.
WS_PATH = "/mqtt"


class BrokerStartError(RuntimeError):
    """The embedded broker could not start (usually: a port is taken)."""


class EmbeddedBroker:
    """amqtt on ``host``, with a TCP and a WebSocket listener, anonymous access.

    ``tcp_port``/``ws_port`` 0 pick free ports; ``tcp_url``/``ws_url`` give the
    real ones once ``start()`` returned.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", tcp_port: int = 0, ws_port: int = 0, debug: bool = False
    ) -> None:
        self.host = host
        self._want_tcp = tcp_port
        self._want_ws = ws_port
        self._debug = debug
        self._broker: _Broker | None = None
        self._tcp_port: int | None = None
        self._ws_port: int | None = None
        self._saved_levels: dict[str, int] = {}

    # -- public -----------------------------------------------------------------

    @property
    def tcp_port(self) -> int:
        if self._tcp_port is None:
            raise RuntimeError("EmbeddedBroker is not started")
        return self._tcp_port

    @property
    def ws_port(self) -> int:
        if self._ws_port is None:
            raise RuntimeError("EmbeddedBroker is not started")
        return self._ws_port

    @property
    def tcp_url(self) -> str:
        """``mqtt://HOST:PORT`` for the daemon and Python clients."""
        return f"mqtt://{_url_host(self.host)}:{self.tcp_port}"

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/mqtt`` for mqtt.js in the browser."""
        return f"ws://{_url_host(self.host)}:{self.ws_port}{WS_PATH}"

    async def start(self) -> None:
        """Bind both listeners and start serving; raises BrokerStartError if it cannot."""
        if self._broker is not None:
            raise RuntimeError("EmbeddedBroker already started")
        self._quiet_logs()
        broker = _Broker(self._config())
        try:
            await broker.start()
        except BrokerError as exc:
            self._restore_logs()
            cause = exc.__cause__
            if isinstance(cause, OSError):
                ports = (
                    f"TCP port {self._want_tcp or 'any'}, WebSocket port {self._want_ws or 'any'}"
                )
                raise BrokerStartError(
                    f"cannot start the embedded MQTT broker on {self.host} ({ports}): "
                    f"{cause.strerror or cause}"
                ) from None
            raise BrokerStartError(f"cannot start the embedded MQTT broker: {exc}") from None
        self._broker = broker
        try:
            self._tcp_port = _bound_port(broker, "default")
            self._ws_port = _bound_port(broker, "ws")
        except Exception:
            await self.stop()
            raise
        log.info("embedded MQTT broker on %s and %s", self.tcp_url, self.ws_url)

    async def stop(self) -> None:
        """Close every client connection and both listeners; safe to call twice."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            await broker.shutdown()
        except Exception:  # a broker that fails to stop must not mask the caller's shutdown
            log.exception("embedded MQTT broker did not shut down cleanly")
        finally:
            self._restore_logs()
        log.info("embedded MQTT broker stopped")

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- internals ----------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        # The "default" listener's fields fill in defaults of the others
        # (ListenerConfig.apply), so the TCP one must be "default": a ws
        # default would turn every other listener's type into ws.
        return {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{self.host}:{self._want_tcp}"},
                "ws": {"type": "ws", "bind": f"{self.host}:{self._want_ws}"},
            },
            "timeout_disconnect_delay": KEEPALIVE_GRACE_S,
            # Only anonymous auth and our fix: no packet logger, no $SYS publisher.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                f"{__name__}.{DiscardWillOnDisconnect.__name__}": {},
            },
        }

    def _quiet_logs(self) -> None:
        if self._debug:
            return
        for name in _NOISY_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.WARNING:
                self._saved_levels[name] = logger.level
                logger.setLevel(logging.WARNING)

    def _restore_logs(self) -> None:
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_levels.clear()


class DiscardWillOnDisconnect(BasePlugin[Any]):
    """Discard a client's last will as soon as its DISCONNECT is read [MQTT-3.14.4-3].

    amqtt runs this hook as soon as it has parsed a packet, before the task
    that handles it; ``_Broker._handle_disconnect`` waits for the reader to
    finish, so a DISCONNECT that reached the broker always wins over a failed
    write (see the module docstring).  Public because amqtt loads plugins by
    dotted path.
    """

    async def on_mqtt_packet_received(
        self, *, packet: object, session: Session | None = None
    ) -> None:
        if isinstance(packet, DisconnectPacket) and session is not None:
            session.will_flag = False


class _WebSocketsWriter(WebSocketsWriter):
    """Reports a closed WebSocket the way a closed TCP stream is reported.

    amqtt handles ``ConnectionResetError`` from a writer as "client gone", but
    its WebSocket writer raises websockets' ``ConnectionClosed`` instead, which
    escapes as a WARNING plus "Task exception was never retrieved" and ERROR
    tracebacks each time a browser tab closes while a message is on its way.
    """

    async def drain(self) -> None:
        # A WebSocket already closing (the tab sent its close frame) would make
        # websockets wait for the TCP connection to end before raising; amqtt's
        # reader loop ends meanwhile and cancels the task that is writing, which
        # escaped as "Task exception was never retrieved ... Packet handling was
        # cancelled" with two tracebacks.  Say "gone" at once instead.
        if self._protocol.state is not State.OPEN:
            raise ConnectionResetError(f"WebSocket {self._protocol.state.name.lower()}")
        try:
            await super().drain()
        except ConnectionClosed as exc:
            raise ConnectionResetError(f"WebSocket closed: {exc}") from None


class _Broker(Broker):
    """amqtt's Broker with the fixes listed in the module docstring.

    Retained messages: on every CONNECT, amqtt 0.12 walks *all* subscription filters of *all*
    clients (meant for resuming the connecting client's own persistent
    session) and sends the connecting client every retained message matching
    any of them.  A device would then receive viewers' retained ``status``
    topics on reconnect, and a viewer other devices' status.  Here a
    retained message goes only to a session that holds that subscription.
    """

    async def _handle_disconnect(
        self, client_session: Session, handler: Any, disconnect_waiter: asyncio.Future[Any]
    ) -> None:
        # The connection ended without a DISCONNECT having been processed: let the
        # reader finish parsing what the client sent before it closed (a DISCONNECT
        # there clears the will through DiscardWillOnDisconnect), then decide.
        if client_session.will_flag and not isinstance(
            disconnect_waiter.result(), DisconnectPacket
        ):
            stopped = getattr(handler, "_reader_stopped", None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WILL_GRACE_S):
                    if isinstance(stopped, asyncio.Event):
                        await stopped.wait()
                    else:  # pragma: no cover - other amqtt versions
                        await asyncio.sleep(WILL_GRACE_S)
            for _ in range(3):  # the plugin's task was queued before the reader stopped
                await asyncio.sleep(0)
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> tuple[Any, Session]:
        handler, session = await super()._initialize_client_session(*args, **kwargs)
        # amqtt's broker handler ignores an expired keep-alive (handle_read_timeout is
        # a no-op), so a client that vanished without a TCP close (power cut, Wi-Fi
        # gone) would stay "connected" forever and its will would never go out.
        handler.handle_read_timeout = functools.partial(_drop_silent_client, handler, session)
        return handler, session

    async def ws_connected(self, websocket: ServerConnection, listener_name: str) -> None:
        await self._client_connected(
            listener_name, WebSocketsReader(websocket), _WebSocketsWriter(websocket)
        )

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        holders = self._subscriptions.get(subscription[0], ())
        if any(held.client_id == session.client_id for held, _qos in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


def _drop_silent_client(handler: Any, session: Session) -> None:
    """Keep-alive expired: treat the connection as lost (the broker then sends the will)."""
    if getattr(handler, "_peercam_dropping", None) is not None:
        return
    log.info("MQTT client %r silent past its keep-alive: disconnecting it", session.client_id)
    handler._peercam_dropping = asyncio.ensure_future(handler.handle_connection_closed())


def _bound_port(broker: Broker, listener: str) -> int:
    """The port amqtt's listener actually bound (amqtt keeps no public record of it)."""
    try:
        sockets = broker._servers[listener].instance.sockets
    except (AttributeError, KeyError) as exc:
        raise BrokerStartError(
            f"cannot find the port of amqtt listener {listener!r} ({exc!r}): "
            "this amqtt version is not supported (peercam is tested with amqtt 0.12)"
        ) from None
    for sock in sockets or ():
        with contextlib.suppress(OSError):
            return int(sock.getsockname()[1])
    raise BrokerStartError(f"amqtt listener {listener!r} has no listening socket")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
