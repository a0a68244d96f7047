"""``peercam check`` for ``[relay]``: is Janus there, and will the room take H.264?"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config, ConfigError
from .janus import PublishFault, room_videocodec
from .janus_api import VIDEOROOM, JanusClient, JanusError, JanusGone

Line = Callable[[bool | str, str], None]


async def check_relay(config: Config, line: Line) -> int:
    """One line per finding; returns the number of failures (0 without [relay])."""
    relay = config.relay
    if not relay.enabled:
        return 0
    try:
        api_secret = config.read_relay_secret("api_secret_file")
        pin = config.read_relay_secret("room_pin_file")
    except ConfigError as exc:
        line(False, str(exc))
        return 1
    room = relay.room_for(config.device.id)
    where = f"relay: Janus at {relay.url}"
    try:
        client = await JanusClient.connect(relay.url, api_secret=api_secret, timeout=5)
    except (JanusError, JanusGone, OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        line(False, f"{where}: cannot open a session ({reason})")
        return 1
    try:
        handle = await client.attach(VIDEOROOM)
        exists = (await client.request(handle, {"request": "exists", "room": room})).get("exists")
        if not exists:
            if relay.create_room:
                line(True, f"{where} answers; room {room} is absent: the device creates it (H.264)")
                return 0
            line(False, f"{where}: room {room} does not exist and create_room is false")
            return 1
        codec = await room_videocodec(client, handle, room)
        if codec is not None and "h264" not in codec.split(","):
            line(False, f"{where}: room {room} takes video {codec}, not H.264")
            return 1
        if pin is None:
            # A join with no pin to a room that has one is refused: try as a subscriber would.
            probe = await client.attach(VIDEOROOM)
            try:
                await client.message(
                    probe, {"request": "join", "ptype": "publisher", "room": room}, timeout=5
                )
            except JanusError as exc:
                raise PublishFault(f"room {room} refuses a publisher: {exc}") from None
        line(True, f"{where} answers; room {room} exists ({codec or 'codec not listed'})")
        return 0
    except PublishFault as exc:
        line(False, f"{where}: {exc}")
        return 1
    except (JanusError, JanusGone, TimeoutError) as exc:
        line(False, f"{where}: {exc}")
        return 1
    finally:
        await client.close()
