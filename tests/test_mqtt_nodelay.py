"""The daemon's broker connection has Nagle off: signaling replies must not wait for ACKs."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from peercam.config import MqttConfig
from peercam.mqtt_link import LastWill, MqttLink
from tests.mosquitto import MosquittoBroker


async def test_broker_socket_has_tcp_nodelay(mosquitto: MosquittoBroker) -> None:
    async def nothing() -> None:
        return None

    link = MqttLink(
        MqttConfig(url=mosquitto.url, username="nodelay"),
        client_id="nodelay",
        password=None,
        will=LastWill("peercam/nodelay/status", b"{}"),
        subscriptions=["peercam/nodelay/in/+"],
        on_message=lambda topic, payload: None,
        on_connect=nothing,
    )
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(10):
            await link.connected.wait()
        assert link._client is not None
        sock = link._client._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
