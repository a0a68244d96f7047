"""The picamera2 keys of ``[camera]``: orientation, camera index, bitrate floor."""

from __future__ import annotations

import pytest

from peercam.config import ConfigError, config_from_dict


def test_defaults_keep_old_configs_valid() -> None:
    camera = config_from_dict({}).camera
    assert (camera.index, camera.hflip, camera.vflip, camera.rotation) == (0, False, False, 0)
    assert camera.min_bitrate == 300_000 and camera.lowest_bitrate == 300_000


def test_orientation_and_index() -> None:
    camera = config_from_dict(
        {"camera": {"source": "picamera2", "index": 1, "hflip": True, "rotation": 180}}
    ).camera
    assert (camera.index, camera.hflip, camera.vflip, camera.rotation) == (1, True, False, 180)


@pytest.mark.parametrize("rotation", [90, 270, 45, -180])
def test_the_isp_cannot_turn_by_90_degrees(rotation: int) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"camera": {"rotation": rotation}}, source_path="p.toml")
    assert "[camera] rotation: allowed: 0 or 180 (the Pi's ISP can flip but not transpose" in str(
        info.value
    )


def test_the_bitrate_floor_must_be_below_the_bitrate() -> None:
    with pytest.raises(ConfigError, match=r"min_bitrate \(3000000\) is above bitrate \(2000000\)"):
        config_from_dict({"camera": {"min_bitrate": 3_000_000}})
    # An unset floor above a low bitrate is simply the bitrate.
    camera = config_from_dict({"camera": {"bitrate": 200_000}}).camera
    assert camera.lowest_bitrate == 200_000


def test_an_unknown_camera_index_or_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[camera\] index"):
        config_from_dict({"camera": {"index": 9}})
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"camera": {"hflipp": True}})
