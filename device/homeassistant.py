"""Home Assistant MQTT discovery: the doorbell appears in Home Assistant by itself.

Home Assistant reads the device's retained ``status`` as it is (online,
ringing, viewers, faults).  The device adds three things: the doorbell
event on ``{prefix}/{device}/ha/event`` for every counted press (the
viewers' ``call`` event comes once per call, a doorbell fires on each
press), the latest ring snapshot retained on ``{prefix}/{device}/ha/snapshot``
(raw JPEG, for the ``image`` entity), and the configs themselves, retained
under the discovery prefix.

Everything here is off the hot path: ``HomeAssistantBridge`` queues its
publishes for one worker task, and a ring, a call or live video never waits
for it.  A failed publish is logged and the next (re)connection, or Home
Assistant's birth message, publishes everything again.

``discovery_configs()`` is pure (the unit tests check its payloads);
docs/home-assistant.md lists the entities and the ACL Home Assistant needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import __version__
from .config import Config, HomeAssistantConfig

log = logging.getLogger("peercam.homeassistant")

Publish = Callable[[str, bytes, bool], Awaitable[bool]]

QUEUE_SIZE = 64  # publishes waiting for the broker before the oldest are dropped

#: (component, object) of every entity this module may publish, in publishing order.
ENTITIES = (
    ("event", "doorbell"),
    ("image", "snapshot"),
    ("binary_sensor", "online"),
    ("binary_sensor", "ringing"),
    ("sensor", "viewers"),
    ("button", "open_door"),
    ("binary_sensor", "motion"),
)

#: Event types of the doorbell ``event`` entity; ``motion`` where ``[motion]`` is enabled.
EVENT_TYPES = ("ring",)
MOTION_EVENT_TYPES = ("ring", "motion")

# Templates run inside Home Assistant.  ``value_json is defined`` guards against
# a payload that is not JSON (an empty retained message, a hand-made test).
_ONLINE = (
    "{{ value_json.state if value_json is defined and value_json.state is defined else 'offline' }}"
)
_CONNECTED = "{{ 'ON' if value_json is defined and value_json.state == 'online' else 'OFF' }}"
_RINGING = (
    "{{ 'ON' if value_json is defined and value_json.state == 'online' "
    "and value_json.call_state == 'ringing' else 'OFF' }}"
)
_MOTION = (
    "{{ 'ON' if value_json is defined and value_json.state == 'online' "
    "and value_json.motion | default(false) else 'OFF' }}"
)
_VIEWERS = "{{ value_json.viewers if value_json is defined else 0 }}"
_STATUS_ATTRIBUTES = (
    "{{ {'faults': value_json.faults | default([]), "
    "'camera': value_json.camera | default(none), "
    "'call_state': value_json.call_state | default(none), "
    "'max_viewers': value_json.max_viewers | default(none)} | tojson "
    "if value_json is defined else '{}' }}"
)
OPEN_PAYLOAD = '{"v":1,"type":"open"}'


@dataclass(frozen=True, slots=True)
class DiscoveryDevice:
    """What the configs say about one device."""

    device_id: str
    name: str
    version: str
    topic_prefix: str = "peercam"
    discovery_prefix: str = "homeassistant"
    #: Home Assistant's MQTT user: the button publishes on ``in/{user}``.
    user: str = "homeassistant"
    #: A door strike is configured and Home Assistant is among ``door_openers``.
    door_button: bool = False
    dashboard_url: str = ""
    #: Motion detection is on: the event entity also fires ``motion``, and a motion sensor.
    motion: bool = False

    @property
    def base(self) -> str:
        return f"{self.topic_prefix}/{self.device_id}"

    @property
    def node_id(self) -> str:
        return f"peercam_{self.device_id}"

    @property
    def snapshot_topic(self) -> str:
        return f"{self.base}/ha/snapshot"

    @property
    def event_topic(self) -> str:
        return f"{self.base}/ha/event"

    @property
    def birth_topic(self) -> str:
        return f"{self.discovery_prefix}/status"

    def config_topic(self, component: str, obj: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{obj}/config"


def device_block(d: DiscoveryDevice) -> dict[str, object]:
    block: dict[str, object] = {
        "identifiers": [d.node_id],
        "name": d.name,
        "manufacturer": "peercam",
        "model": "peercam doorbell",
        "sw_version": d.version,
    }
    if d.dashboard_url:
        block["configuration_url"] = d.dashboard_url
    return block


def discovery_configs(d: DiscoveryDevice) -> dict[str, dict[str, object]]:
    """Config topic → discovery payload, for every entity this device has."""
    status = f"{d.base}/status"
    availability = [{"topic": status, "value_template": _ONLINE}]

    def entity(obj: str, name: str, **fields: object) -> dict[str, object]:
        payload: dict[str, object] = {
            "name": name,
            "unique_id": f"{d.node_id}_{obj}",
            "object_id": f"{d.device_id}_{obj}",
            "device": device_block(d),
            "origin": {"name": "peercam", "sw_version": d.version},
            "qos": 1,
        }
        payload.update(fields)
        return payload

    configs = {
        d.config_topic("event", "doorbell"): entity(
            "doorbell",
            "Doorbell",
            device_class="doorbell",
            event_types=list(MOTION_EVENT_TYPES if d.motion else EVENT_TYPES),
            state_topic=d.event_topic,
            availability=availability,
        ),
        d.config_topic("image", "snapshot"): entity(
            "snapshot",
            "Snapshot",
            image_topic=d.snapshot_topic,
            content_type="image/jpeg",
            availability=availability,
        ),
        # No availability: a dead device (its last will) reads "off", not "unavailable".
        d.config_topic("binary_sensor", "online"): entity(
            "online",
            "Online",
            device_class="connectivity",
            entity_category="diagnostic",
            state_topic=status,
            value_template=_CONNECTED,
        ),
        d.config_topic("binary_sensor", "ringing"): entity(
            "ringing",
            "Ringing",
            icon="mdi:bell-ring",
            state_topic=status,
            value_template=_RINGING,
            availability=availability,
        ),
        d.config_topic("sensor", "viewers"): entity(
            "viewers",
            "Viewers",
            icon="mdi:eye",
            state_class="measurement",
            state_topic=status,
            value_template=_VIEWERS,
            json_attributes_topic=status,
            json_attributes_template=_STATUS_ATTRIBUTES,
            availability=availability,
        ),
    }
    if d.motion:
        # Follows the retained status' ``motion`` (true from a motion start to its end).
        configs[d.config_topic("binary_sensor", "motion")] = entity(
            "motion",
            "Motion",
            device_class="motion",
            state_topic=status,
            value_template=_MOTION,
            availability=availability,
        )
    if d.door_button:
        configs[d.config_topic("button", "open_door")] = entity(
            "open_door",
            "Open door",
            icon="mdi:door-open",
            command_topic=f"{d.base}/in/{d.user}",
            payload_press=OPEN_PAYLOAD,
            retain=False,
            availability=availability,
        )
    return configs


def all_config_topics(d: DiscoveryDevice) -> list[str]:
    """Every config topic this device may ever have published (for removal)."""
    return [d.config_topic(component, obj) for component, obj in ENTITIES]


def encode_config(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def describe(cfg: HomeAssistantConfig, d: DiscoveryDevice) -> str:
    if not cfg.enabled:
        if "enabled" in cfg.model_fields_set:
            return "Home Assistant discovery switched off: removing this device's configs"
        return "Home Assistant discovery off"
    button = "with" if d.door_button else "without"
    return (
        f"Home Assistant discovery on {d.discovery_prefix}/…/{d.node_id}/… "
        f"({button} the open-door button)"
    )


def discovery_device(config: Config, *, door: bool) -> DiscoveryDevice:
    """The discovery view of a device's config (``door``: a strike is wired)."""
    ha = config.homeassistant
    return DiscoveryDevice(
        device_id=config.device.id,
        name=config.device.name,
        version=__version__,
        topic_prefix=config.mqtt.topic_prefix,
        discovery_prefix=ha.discovery_prefix,
        user=ha.user,
        door_button=door and ha.user in config.gpio.door_openers,
        dashboard_url=ha.dashboard_url,
        motion=config.motion.enabled,
    )


async def remove_from_homeassistant(config: Config, timeout: float = 15.0) -> bool:
    """Connect as the device and clear its discovery configs (``peercam ha-remove``)."""
    from .mqtt_link import LastWill, MqttLink

    async def on_connect() -> None:
        pass

    link = MqttLink(
        config.mqtt,
        client_id=f"peercam-{config.device.id}-ha-remove",
        password=config.read_mqtt_password(),
        # never used (we disconnect cleanly); MqttLink wants a will
        will=LastWill(f"{config.mqtt.topic_prefix}/{config.device.id}/ha/removed", b"", False),
        subscriptions=[],
        on_message=lambda topic, payload: None,
        on_connect=on_connect,
        max_backoff=2.0,
    )
    task = asyncio.create_task(link.run(), name="peercam-ha-remove")
    try:
        async with asyncio.timeout(timeout):
            await link.connected.wait()
        bridge = HomeAssistantBridge(
            config.homeassistant,
            discovery_device(config, door=True),
            lambda topic, payload, retain: link.publish(topic, payload, retain=retain),
        )
        return await bridge.remove(timeout)
    except TimeoutError:
        log.error(
            "could not reach the broker %s within %.0f s: %s",
            config.mqtt.url,
            timeout,
            link.last_error,
        )
        return False
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class HomeAssistantBridge:
    """Publishes the discovery configs and the ring snapshot, never in anyone's way."""

    def __init__(self, cfg: HomeAssistantConfig, device: DiscoveryDevice, publish: Publish) -> None:
        self.cfg = cfg
        self.device = device
        self._publish = publish
        self._queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(QUEUE_SIZE)
        self._worker: asyncio.Task[None] | None = None
        self._latest_jpeg: bytes | None = None
        self.published = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled

    @property
    def subscriptions(self) -> list[str]:
        """Home Assistant's birth topic, when discovery is on."""
        return [self.device.birth_topic] if self.enabled else []

    # --- inputs (all return at once) ---------------------------------------------------

    def connected(self) -> None:
        """The MQTT link (re)connected: configs (or their removal) and the snapshot again."""
        if self.enabled:
            self._queue_configs()
            if self._latest_jpeg is not None:
                self._put(self.device.snapshot_topic, self._latest_jpeg, True)
        elif self.switched_off:
            # Remove whatever an earlier run published (an empty retained message
            # deletes nothing that is not there, so this is safe every time).
            self._queue_removal()

    @property
    def switched_off(self) -> bool:
        """``enabled = false`` written in the config (not just the default): clean up.

        A device that never used Home Assistant publishes nothing under its prefix
        (a broker whose ACL has no discovery lines would log denied publishes).
        """
        return not self.cfg.enabled and "enabled" in self.cfg.model_fields_set

    def on_message(self, topic: str, payload: bytes) -> bool:
        """Handle Home Assistant's birth message; False for a topic that is not ours."""
        if not self.enabled or topic != self.device.birth_topic:
            return False
        if payload.strip() == b"online":
            log.info("Home Assistant came online: publishing the discovery configs again")
            self._queue_configs()
        return True

    def snapshot(self, jpeg: bytes) -> None:
        """A ring's snapshot: the image entity shows it (retained, raw JPEG)."""
        self._latest_jpeg = jpeg
        if self.enabled:
            self._put(self.device.snapshot_topic, jpeg, True)

    def fire(self, event_type: str, **attributes: object) -> None:
        """The doorbell event: ``ring`` on every counted press, ``motion`` at a motion start."""
        if self.enabled:
            payload = {"event_type": event_type, **attributes}
            self._put(self.device.event_topic, json.dumps(payload).encode(), False)

    def remember_snapshot(self, jpeg: bytes | None) -> None:
        """The newest snapshot from the call log at start: republished on connection."""
        if jpeg:
            self._latest_jpeg = jpeg

    # --- publishing -------------------------------------------------------------------

    def _queue_configs(self) -> None:
        configs = discovery_configs(self.device)
        for topic in all_config_topics(self.device):
            if topic in configs:
                self._put(topic, encode_config(configs[topic]), True)
            else:  # e.g. the door button after the strike was removed from the config
                self._put(topic, b"", True)

    def _queue_removal(self) -> None:
        for topic in all_config_topics(self.device):
            self._put(topic, b"", True)
        self._put(self.device.snapshot_topic, b"", True)

    def _put(self, topic: str, payload: bytes, retain: bool) -> None:
        while True:
            try:
                self._queue.put_nowait((topic, payload, retain))
                return
            except asyncio.QueueFull:
                dropped = self._queue.get_nowait()  # the oldest: a newer copy follows
                self._queue.task_done()
                log.warning("Home Assistant: publish queue full, dropped one for %s", dropped[0])

    async def _work(self) -> None:
        while True:
            topic, payload, retain = await self._queue.get()
            try:
                ok = await self._publish(topic, payload, retain)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ok = False
                log.warning("Home Assistant: publishing %s failed: %s", topic, exc)
            if ok:
                self.published += 1
            else:
                self.failed += 1
                log.info("Home Assistant: %s not published (sent again on reconnection)", topic)
            self._queue.task_done()

    async def remove(self, timeout: float = 10.0) -> bool:
        """Publish the empty retained configs now and wait for them (``peercam ha-remove``)."""
        ok = True
        async with asyncio.timeout(timeout):
            for topic in [*all_config_topics(self.device), self.device.snapshot_topic]:
                ok = await self._publish(topic, b"", True) and ok
        return ok

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._work(), name="peercam-homeassistant"
            )

    async def close(self, timeout: float = 2.0) -> None:
        """Give queued publishes a moment (a snapshot just taken), then stop."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None
