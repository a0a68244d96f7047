"""A small client for Janus's WebSocket API (subprotocol ``janus-protocol``).

Only what peercam needs: a session, plugin handles, synchronous plugin
requests (``create``, ``exists``) and asynchronous ones (``join``,
``publish``, ``start``) whose answer comes as an ``event`` with the same
transaction, possibly *before* its ``ack``.  The socket closing is the
signal that Janus went away (it sends no hangup when it dies): ``closed``
resolves with the close code, and every request still waiting fails.

Used by the device's publisher and by the tests' and benchmarks' viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("peercam.relay.janus")

Message = dict[str, Any]

SUBPROTOCOL = "janus-protocol"
VIDEOROOM = "janus.plugin.videoroom"


class JanusError(Exception):
    """Janus (or its plugin) refused a request; ``code`` is Janus's error code."""

    def __init__(self, code: int | None, reason: str, request: str = "") -> None:
        self.code = code
        self.reason = reason
        self.request = request
        where = f"{request}: " if request else ""
        super().__init__(f"{where}error {code} ({reason})" if code is not None else where + reason)


class JanusGone(ConnectionError):
    """The WebSocket to Janus closed (Janus stopped, crashed or dropped us)."""


class JanusClient:
    """One WebSocket to Janus carrying one Janus session."""

    def __init__(self, ws: Any, api_secret: str | None) -> None:
        self._ws = ws
        self._api_secret = api_secret
        self._pending: dict[str, tuple[asyncio.Future[Message], bool]] = {}
        self.events: asyncio.Queue[Message] = asyncio.Queue(256)
        self.session_id: int | None = None
        self._keepalive: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[str] = loop.create_future()
        self._reader = loop.create_task(self._read(), name="peercam-janus-reader")

    @classmethod
    async def connect(
        cls, url: str, *, api_secret: str | None = None, timeout: float = 10.0
    ) -> JanusClient:
        """Open the WebSocket and create a Janus session (raises OSError, JanusError...)."""
        async with asyncio.timeout(timeout):
            ws = await websockets.connect(
                url,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                open_timeout=timeout,
                ping_interval=None,  # Janus has its own keepalive
                max_size=2**20,
            )
        client = cls(ws, api_secret)
        try:
            reply = await client._call({"janus": "create"}, timeout=timeout)
        except BaseException:
            await client.close()
            raise
        client.session_id = int(reply["data"]["id"])
        client._keepalive = asyncio.get_running_loop().create_task(
            client._keep_alive(), name="peercam-janus-keepalive"
        )
        return client

    async def _read(self) -> None:
        why = "closed"
        try:
            async for raw in self._ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    log.warning("Janus sent something that is not JSON: %.200r", raw)
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except ConnectionClosed as exc:
            why = f"code {exc.rcvd.code if exc.rcvd else 1006}"
        except Exception as exc:  # a broken socket is the same signal
            why = f"{type(exc).__name__}: {exc}"
        else:
            rcvd = getattr(self._ws, "close_code", None)
            why = f"code {rcvd if rcvd is not None else 1006}"
        finally:
            if not self.closed.done():
                self.closed.set_result(why)
            for future, _ in self._pending.values():
                if not future.done():
                    future.set_exception(JanusGone(f"the WebSocket to Janus closed ({why})"))
            self._pending.clear()

    def _dispatch(self, message: Message) -> None:
        kind = message.get("janus")
        entry = self._pending.get(str(message.get("transaction", "")))
        if entry is not None:
            future, wants_event = entry
            if kind == "ack" and wants_event:
                return  # the event follows (or already came)
            self._pending.pop(str(message["transaction"]), None)
            if not future.done():
                future.set_result(message)
            return
        if kind in ("ack",):
            return
        with contextlib.suppress(asyncio.QueueFull):
            self.events.put_nowait(message)

    async def _call(
        self, request: Message, *, wants_event: bool = False, timeout: float
    ) -> Message:
        if self.closed.done():
            raise JanusGone(f"the WebSocket to Janus closed ({self.closed.result()})")
        transaction = secrets.token_hex(8)
        request = {**request, "transaction": transaction}
        if self.session_id is not None and "session_id" not in request:
            request["session_id"] = self.session_id
        if self._api_secret:
            request["apisecret"] = self._api_secret
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = (future, wants_event)
        try:
            await self._ws.send(json.dumps(request))
            async with asyncio.timeout(timeout):
                reply = await future
        except ConnectionClosed as exc:
            raise JanusGone(f"the WebSocket to Janus closed ({exc})") from None
        except TimeoutError:
            raise JanusError(None, f"no answer within {timeout:g} s", request["janus"]) from None
        finally:
            self._pending.pop(transaction, None)
        if reply.get("janus") == "error":
            error = reply.get("error") or {}
            raise JanusError(error.get("code"), str(error.get("reason", "?")), request["janus"])
        return reply

    async def _keep_alive(self) -> None:
        with contextlib.suppress(JanusGone, JanusError, OSError):
            while not self.closed.done():
                await asyncio.sleep(25)  # Janus's session_timeout is 60 s by default
                await self._call({"janus": "keepalive"}, timeout=10)

    async def attach(self, plugin: str = VIDEOROOM, timeout: float = 10.0) -> int:
        reply = await self._call({"janus": "attach", "plugin": plugin}, timeout=timeout)
        return int(reply["data"]["id"])

    async def request(self, handle: int, body: Message, timeout: float = 10.0) -> Message:
        """A synchronous plugin request (``create``, ``exists``, ``list``...): its data."""
        reply = await self._call(
            {"janus": "message", "handle_id": handle, "body": body}, timeout=timeout
        )
        return _plugin_data(reply, str(body.get("request", "")))

    async def message(
        self, handle: int, body: Message, jsep: Message | None = None, timeout: float = 15.0
    ) -> tuple[Message, Message | None]:
        """An asynchronous plugin request: (event data, JSEP or None)."""
        request: Message = {"janus": "message", "handle_id": handle, "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self._call(request, wants_event=True, timeout=timeout)
        return _plugin_data(reply, str(body.get("request", ""))), reply.get("jsep")

    async def close(self) -> None:
        """Destroy the session (when Janus still listens) and close the socket."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.session_id is not None and not self.closed.done():
            with contextlib.suppress(Exception):
                await self._call({"janus": "destroy"}, timeout=2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), 2)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        if self._keepalive is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keepalive


def _plugin_data(reply: Message, request: str) -> Message:
    data = (reply.get("plugindata") or {}).get("data") or {}
    if "error_code" in data or "error" in data:
        raise JanusError(data.get("error_code"), str(data.get("error", "?")), request)
    return data
