"""Home Assistant discovery without Home Assistant: payloads, the bridge's queue, provisioning.

These always run; tests/test_homeassistant_e2e.py proves the same payloads
against a real Home Assistant core where Python 3.13 exists.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from peercam.config import ConfigError, HomeAssistantConfig, config_from_dict
from peercam.homeassistant import (
    ENTITIES,
    OPEN_PAYLOAD,
    DiscoveryDevice,
    HomeAssistantBridge,
    all_config_topics,
    discovery_configs,
    discovery_device,
)
from peercam.provisioning.registry import Registry
from tests.provisioned import Site


def frontdoor(**kw: object) -> DiscoveryDevice:
    fields: dict[str, object] = {"device_id": "frontdoor", "name": "Front door", "version": "9.9"}
    fields.update(kw)
    return DiscoveryDevice(**fields)  # type: ignore[arg-type]


def test_one_device_with_every_entity_and_its_topics() -> None:
    configs = discovery_configs(
        frontdoor(door_button=True, motion=True, dashboard_url="https://cam.example/")
    )
    assert sorted(configs) == sorted(
        f"homeassistant/{component}/peercam_frontdoor/{obj}/config" for component, obj in ENTITIES
    )
    devices = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
    assert len(devices) == 1, "every entity belongs to the same Home Assistant device"
    device = json.loads(devices.pop())
    assert device == {
        "identifiers": ["peercam_frontdoor"],
        "name": "Front door",
        "manufacturer": "peercam",
        "model": "peercam doorbell",
        "sw_version": "9.9",
        "configuration_url": "https://cam.example/",
    }
    unique = [c["unique_id"] for c in configs.values()]
    assert len(set(unique)) == len(unique)

    event = configs["homeassistant/event/peercam_frontdoor/doorbell/config"]
    assert event["device_class"] == "doorbell"
    assert event["event_types"] == ["ring", "motion"]
    motion = configs["homeassistant/binary_sensor/peercam_frontdoor/motion/config"]
    assert motion["device_class"] == "motion"
    assert motion["state_topic"] == "peercam/frontdoor/status"
    assert "value_json.motion" in str(motion["value_template"])
    assert event["state_topic"] == "peercam/frontdoor/ha/event"
    image = configs["homeassistant/image/peercam_frontdoor/snapshot/config"]
    assert image["image_topic"] == "peercam/frontdoor/ha/snapshot"
    assert image["content_type"] == "image/jpeg"
    online = configs["homeassistant/binary_sensor/peercam_frontdoor/online/config"]
    assert online["device_class"] == "connectivity"
    assert online["state_topic"] == "peercam/frontdoor/status"
    assert "availability" not in online  # a dead device reads "off"
    button = configs["homeassistant/button/peercam_frontdoor/open_door/config"]
    assert button["command_topic"] == "peercam/frontdoor/in/homeassistant"
    assert json.loads(str(button["payload_press"])) == {"v": 1, "type": "open"}
    assert button["payload_press"] == OPEN_PAYLOAD
    viewers = configs["homeassistant/sensor/peercam_frontdoor/viewers/config"]
    assert viewers["json_attributes_topic"] == "peercam/frontdoor/status"
    assert "faults" in str(viewers["json_attributes_template"])
    for topic, config in configs.items():
        if "online" not in topic:
            assert config["availability"] == [
                {
                    "topic": "peercam/frontdoor/status",
                    "value_template": config["availability"][0]["value_template"],
                }  # type: ignore[index]
            ]
        assert len(json.dumps(config)) < 4096


def test_motion_appears_only_where_motion_detection_is_on() -> None:
    configs = discovery_configs(frontdoor())
    assert "homeassistant/binary_sensor/peercam_frontdoor/motion/config" not in configs
    assert configs["homeassistant/event/peercam_frontdoor/doorbell/config"]["event_types"] == [
        "ring"
    ]
    on = config_from_dict(
        {
            "device": {"id": "frontdoor"},
            "mqtt": {"url": "mqtt://127.0.0.1"},
            "motion": {"enabled": True},
        }
    )
    assert discovery_device(on, door=False).motion
    # Removal still clears the motion sensor a device once had.
    assert "homeassistant/binary_sensor/peercam_frontdoor/motion/config" in all_config_topics(
        frontdoor()
    )


def test_no_door_button_without_a_strike_and_prefixes_are_followed() -> None:
    d = frontdoor(topic_prefix="site/a", discovery_prefix="ha", user="hass")
    configs = discovery_configs(d)
    assert not any("/button/" in t for t in configs)
    assert all(t.startswith("ha/") for t in configs)
    assert "configuration_url" not in next(iter(configs.values()))["device"]  # type: ignore[operator]
    assert (
        discovery_configs(frontdoor(door_button=True, user="hass", topic_prefix="site/a"))[
            "homeassistant/button/peercam_frontdoor/open_door/config"
        ]["command_topic"]
        == "site/a/frontdoor/in/hass"
    )
    # removal covers the button even when it is not configured now
    assert "ha/button/peercam_frontdoor/open_door/config" in all_config_topics(d)


def test_the_door_button_needs_a_strike_and_home_assistant_among_the_openers() -> None:
    base = {"device": {"id": "frontdoor"}, "homeassistant": {"enabled": True}}
    listed = config_from_dict({**base, "gpio": {"door_pin": 22, "door_openers": ["homeassistant"]}})
    assert discovery_device(listed, door=True).door_button
    assert not discovery_device(listed, door=False).door_button
    unlisted = config_from_dict({**base, "gpio": {"door_pin": 22, "door_openers": ["alice"]}})
    assert not discovery_device(unlisted, door=True).door_button


def test_config_section_defaults_and_errors() -> None:
    cfg = config_from_dict({}).homeassistant
    assert (cfg.enabled, cfg.discovery_prefix, cfg.user) == (
        False,
        "homeassistant",
        "homeassistant",
    )
    with pytest.raises(ConfigError, match=r"\[homeassistant\] dashboard_url: .*http"):
        config_from_dict({"homeassistant": {"dashboard_url": "cam.example"}})
    with pytest.raises(ConfigError, match=r"\[homeassistant\] discovery_prefix"):
        config_from_dict({"homeassistant": {"discovery_prefix": "home/assistant"}})
    with pytest.raises(ConfigError, match="did you mean discovery_prefix"):
        config_from_dict({"homeassistant": {"discovery_prefx": "x"}})


class Recorder:
    """A publish function: records, optionally slow or failing."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.sent: list[tuple[str, bytes, bool]] = []

    async def __call__(self, topic: str, payload: bytes, retain: bool) -> bool:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("broker on fire")
        self.sent.append((topic, payload, retain))
        return True


async def settle(bridge: HomeAssistantBridge) -> None:
    await asyncio.wait_for(bridge._queue.join(), 10)


async def test_bridge_publishes_configs_on_connect_and_on_birth_only() -> None:
    publish = Recorder()
    d = frontdoor()
    bridge = HomeAssistantBridge(HomeAssistantConfig(enabled=True), d, publish)
    bridge.start()
    assert bridge.subscriptions == ["homeassistant/status"]
    bridge.connected()
    await settle(bridge)
    configs = discovery_configs(d)
    sent = {t: p for t, p, retain in publish.sent if retain}
    assert {t: json.loads(p) for t, p in sent.items() if p} == configs
    assert sent["homeassistant/button/peercam_frontdoor/open_door/config"] == b""  # no strike
    publish.sent.clear()
    assert bridge.on_message("homeassistant/status", b"offline")
    assert bridge.on_message("homeassistant/status", b"online")
    assert not bridge.on_message("peercam/frontdoor/in/alice", b"{}")
    await settle(bridge)
    assert len([p for _, p, _ in publish.sent if p]) == len(configs)
    publish.sent.clear()
    bridge.fire("ring", call="call-0000001", at=1.5)
    bridge.snapshot(b"\xff\xd8jpeg")
    await settle(bridge)
    assert publish.sent == [
        (
            "peercam/frontdoor/ha/event",
            b'{"event_type": "ring", "call": "call-0000001", "at": 1.5}',
            False,
        ),
        ("peercam/frontdoor/ha/snapshot", b"\xff\xd8jpeg", True),
    ]
    await bridge.close()


async def test_switched_off_it_removes_what_it_published_and_ignores_births() -> None:
    publish = Recorder()
    bridge = HomeAssistantBridge(HomeAssistantConfig(enabled=False), frontdoor(), publish)
    bridge.start()
    assert bridge.subscriptions == []
    bridge.connected()
    bridge.snapshot(b"jpeg")  # kept, never published while off
    bridge.fire("ring", call="c")
    assert not bridge.on_message("homeassistant/status", b"online")
    await settle(bridge)
    assert {t for t, _, _ in publish.sent} == {
        *all_config_topics(frontdoor()),
        "peercam/frontdoor/ha/snapshot",
    }
    assert all(p == b"" and retain for _, p, retain in publish.sent)
    await bridge.close()

    # Never turned on (no [homeassistant] enabled key at all): nothing is published.
    untouched = Recorder()
    bridge = HomeAssistantBridge(config_from_dict({}).homeassistant, frontdoor(), untouched)
    bridge.start()
    bridge.connected()
    await settle(bridge)
    assert untouched.sent == []
    await bridge.close()


async def test_a_slow_or_failing_broker_never_holds_up_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = Recorder(delay=30.0)
    bridge = HomeAssistantBridge(HomeAssistantConfig(enabled=True), frontdoor(), slow)
    bridge.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(20):  # far more than the queue holds
        bridge.connected()
        bridge.snapshot(b"jpeg")
    assert loop.time() - started < 1.0  # returns at once; (not a timing claim: 30 s publishes)
    assert bridge._queue.qsize() <= 64
    assert "publish queue full" in caplog.text
    await bridge.close(timeout=0.1)

    failing = Recorder(fail=True)
    bridge = HomeAssistantBridge(HomeAssistantConfig(enabled=True), frontdoor(), failing)
    bridge.start()
    bridge.connected()
    await settle(bridge)
    assert bridge.failed == len(ENTITIES) and bridge.published == 0
    assert "broker on fire" in caplog.text
    await bridge.close()


# --- provisioning -----------------------------------------------------------------------


def test_provision_homeassistant_add_makes_its_user_acl_and_bundles(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.init("--plain")
    site.add_device("frontdoor")
    site.add_device("backdoor")
    site.add_viewer("alice", "frontdoor")
    before = site.bundle_file("frontdoor", "peercam.toml").read_text()
    assert "[homeassistant]" not in before

    out = site.provision("homeassistant", "add", "--device", "frontdoor")
    password = re.search(r"^  Password:  (\S+)$", out, re.MULTILINE)
    assert password, out
    assert "  Broker:    127.0.0.1" in out
    assert f"  Port:      {site.mqtt_port}" in out
    assert "  Username:  homeassistant" in out
    assert "door_openers" in out
    site.export()

    acl = (site.registry / "mosquitto" / "acl").read_text()
    block = acl.split("user homeassistant\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block == [
        "topic readwrite homeassistant/#",
        "topic read peercam/frontdoor/status",
        "topic read peercam/frontdoor/ha/event",
        "topic read peercam/frontdoor/ha/snapshot",
        "topic write peercam/frontdoor/in/homeassistant",
    ]
    device = acl.split("user frontdoor\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "topic write homeassistant/+/peercam_frontdoor/+/config" in device
    assert "topic read homeassistant/status" in device
    passwd = (site.registry / "mosquitto" / "passwd").read_text()
    assert passwd.count("homeassistant:$7$") == 1
    assert password.group(1) not in passwd

    front = config_from_dict(_toml(site, "frontdoor"))
    back = config_from_dict(_toml(site, "backdoor"))
    assert front.homeassistant.enabled and not back.homeassistant.enabled  # back: cleans up

    # ids are MQTT user names: no viewer or device may take Home Assistant's
    site.provision("viewer", "add", "homeassistant", "--device", "frontdoor", expect=2)
    site.provision("homeassistant", "add", expect=2)  # only one

    out = site.provision("homeassistant", "remove")
    assert "removes its entities" in out
    site.export()
    acl = (site.registry / "mosquitto" / "acl").read_text()
    assert "user homeassistant" not in acl
    assert "topic write homeassistant/+/peercam_frontdoor/+/config" in acl  # to clean up
    assert not config_from_dict(_toml(site, "frontdoor")).homeassistant.enabled
    assert Registry.open(site.registry).data.homeassistant is None


def test_homeassistant_sees_every_device_by_default_including_later_ones(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.init("--plain")
    site.add_device("frontdoor")
    out = site.provision("homeassistant", "add", "--password", "correct-horse-1")
    assert "every device added later" in out and "correct-horse-1" not in out
    site.add_device("gate")
    site.export()
    acl = (site.registry / "mosquitto" / "acl").read_text()
    assert "topic write peercam/gate/in/homeassistant" in acl
    assert config_from_dict(_toml(site, "gate")).homeassistant.enabled
    listing = site.provision("list")
    assert "Home Assistant: user 'homeassistant', sees: frontdoor, gate" in listing


def _toml(site: Site, device: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(site.bundle_file(device, "peercam.toml").read_text())


# --- the door rule for Home Assistant -------------------------------------------------------


class FakeCalls:
    def __init__(self, answering: str | None) -> None:
        self.answering = answering

    def answering_viewer(self) -> str | None:
        return self.answering

    def is_answering(self, viewer: str) -> bool:
        return viewer == self.answering


class FakePanel:
    door = object()

    def __init__(self) -> None:
        self.pulses: list[float] = []

    def pulse_door(self, seconds: float) -> bool:
        self.pulses.append(seconds)
        return True


@pytest.mark.parametrize(
    ("openers", "answering", "enabled", "opens"),
    [
        (["alice", "homeassistant"], "alice", True, True),  # an opener is in the call
        (["alice", "homeassistant"], None, True, False),  # nobody answered
        (["alice", "homeassistant"], "bob", True, False),  # bob may not open: neither may HA
        (["alice"], "alice", True, False),  # HA not among the openers
        (["alice", "homeassistant"], "alice", False, False),  # integration off: a plain viewer id
    ],
)
async def test_home_assistant_opens_only_during_a_call_answered_by_an_opener(
    openers: list[str], answering: str | None, enabled: bool, opens: bool
) -> None:
    from peercam.daemon import Daemon
    from peercam.protocol import ErrorCode, ProtocolError

    config = config_from_dict(
        {
            "gpio": {"door_pin": 22, "door_openers": openers},
            "homeassistant": {"enabled": enabled},
        }
    )
    daemon = Daemon(config)
    panel = FakePanel()
    daemon.panel = panel  # type: ignore[assignment]
    daemon.calls = FakeCalls(answering)  # type: ignore[assignment]
    published: list[dict[str, object]] = []

    async def publish_event(message: dict[str, object]) -> bool:
        published.append(message)
        return True

    daemon._publish_event = publish_event  # type: ignore[method-assign]
    if opens:
        await daemon._open_door("homeassistant")
        assert panel.pulses == [1.0]
        assert published[0]["type"] == "opened" and published[0]["by"] == "homeassistant"
    else:
        with pytest.raises(ProtocolError) as refused:
            await daemon._open_door("homeassistant")
        assert refused.value.code == ErrorCode.UNAUTHORIZED
        assert panel.pulses == [] and published == []


def test_the_demo_publishes_discovery_only_when_asked() -> None:
    from peercam.demo import demo_config

    assert not demo_config("mqtt://127.0.0.1:1883").homeassistant.enabled
    asked = demo_config("mqtt://127.0.0.1:1883", homeassistant_url="http://127.0.0.1:8080/")
    assert asked.homeassistant.enabled
    assert asked.homeassistant.dashboard_url == "http://127.0.0.1:8080/"


def test_without_python_313_the_reason_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.ha_core import HomeAssistantUnavailable, find_python313

    if any(Path(p).exists() for p in ("/usr/bin/python3.13", "/usr/local/bin/python3.13")):
        pytest.skip("this machine has a system Python 3.13: the missing case cannot be made")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.delenv("PEERCAM_PYTHON313", raising=False)
    with pytest.raises(HomeAssistantUnavailable, match=r"needs Python 3\.13 .* none was found"):
        find_python313()
