"""Config files: good ones load, wrong ones say file, key, problem and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from peercam.config import ConfigError, config_from_dict, load_config

GOOD = """
[device]
id = "frontdoor"
name = "Front door"
[mqtt]
url = "mqtt://127.0.0.1:1883"
username = "frontdoor"
password_file = ""
topic_prefix = "peercam"
[camera]
source = "test-pattern"
width = 1280
height = 720
fps = 30
bitrate = 2000000
keyframe_interval = 60
[audio]
source = "none"
[webrtc]
max_viewers = 4
ice_servers = []
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "peercam.toml"
    path.write_text(text)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.device.id == "frontdoor"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("127.0.0.1", 1883, False)
    assert cfg.camera.keyframe_interval == 60
    assert cfg.webrtc.max_viewers == 4


def test_shipped_example_config_loads() -> None:
    example = Path(__file__).parent.parent / "peercam.example.toml"
    assert load_config(example).device.id


def test_defaults_fill_a_minimal_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[device]\nid = "gate"\n'))
    assert cfg.mqtt.username == "gate"  # defaults to the device id
    assert cfg.camera.source == "test-pattern"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[camera]\nfps = 0\n", ["[camera] fps", "greater than or equal to 1", "got 0"]),
        ("[camera]\nbitrat = 5\n", ["[camera] bitrat", "unknown key", "did you mean bitrate?"]),
        ("[camera]\nzoom = 2\n", ["[camera] zoom", "unknown key", "peercam.example.toml"]),
        ("keepalive = 30\n", ["keepalive: unknown key", "it belongs in [mqtt]"]),
        ('device_id = "gate"\n', ["device_id: unknown key", "did you mean id in [device]?"]),
        ("[camra]\nfps = 5\n", ["camra: unknown key", "did you mean the section [camera]?"]),
        ('[device]\nid = "Front Door"\n', ["[device] id", "lower-case", "'Front Door'"]),
        ('[mqtt]\nurl = "http://broker"\n', ["[mqtt] url", "mqtt://, mqtts://, ws://, wss://"]),
        ('[mqtt]\nurl = "mqtt://"\n', ["[mqtt] url", "no host"]),
        ('[audio]\nsource = "mic"\n', ["[audio] source", "alsa:<device>"]),
        ('[webrtc]\nice_servers = ["http://x"]\n', ["[webrtc] ice_servers", "stun:host:3478"]),
        ('[webrtc]\nhost_networks = ["lan"]\n', ["[webrtc] host_networks", "CIDR"]),
        ('[camera]\nsource = "usb"\n', ["[camera] source", "test-pattern", "picamera2"]),
        (
            '[camera]\npattern = "grain"\n',
            ["[camera] pattern", "'bars', 'noise' or 'doorway'", "'grain'"],
        ),
        ("[camera\n", ["not valid TOML"]),
        ("camera = 3\n", ["[camera]", "dictionary"]),
    ],
)
def test_wrong_config_says_where_and_what(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for words in expected:
        assert words in message


def test_missing_file_and_unreadable_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    cfg = load_config(write(tmp_path, f'[mqtt]\npassword_file = "{tmp_path}/secret"\n'))
    with pytest.raises(ConfigError, match=r"\[mqtt.password_file\] cannot read"):
        cfg.read_mqtt_password()
    (tmp_path / "secret").write_text("  s3cret\n")
    assert cfg.read_mqtt_password() == "s3cret"


def test_turn_urls_without_a_secret_are_refused() -> None:
    with pytest.raises(ConfigError, match="need turn_secret_file"):
        config_from_dict({"webrtc": {"ice_servers": ["turn:t.example.net:3478"]}})
    # STUN alone needs no secret; TURN with a secret file is fine.
    config_from_dict({"webrtc": {"ice_servers": ["stun:t.example.net:3478"]}})
    config_from_dict(
        {"webrtc": {"ice_servers": ["turn:t.example.net:3478"], "turn_secret_file": "/x"}}
    )
