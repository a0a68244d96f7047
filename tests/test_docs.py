"""The documentation and examples say what the code does."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from peercam.config import (
    DEFAULT_CALL_BUTTON_PIN,
    DEFAULT_LED_PIN,
    Config,
    config_from_dict,
    load_config,
)

ROOT = Path(__file__).parent.parent


def test_example_config_loads_and_lists_every_key() -> None:
    config = load_config(ROOT / "peercam.example.toml")
    assert config.gpio.call_button == DEFAULT_CALL_BUTTON_PIN
    text = (ROOT / "peercam.example.toml").read_text()
    for section, model in Config.model_fields.items():
        if section == "source_path":
            continue
        assert f"[{section}]" in text, section
        for key in model.annotation.model_fields:  # type: ignore[union-attr]
            if key == "replies":
                continue  # shown as a commented [[talkback.replies]] example
            assert re.search(rf"^#? ?{key} *=", text, re.M), f"[{section}] {key}"


def test_hardware_page_matches_the_default_pins() -> None:
    page = (ROOT / "hardware" / "README.md").read_text()
    assert f"BCM {DEFAULT_CALL_BUTTON_PIN}" in page
    assert f"BCM {DEFAULT_LED_PIN}" in page
    snippet = re.search(r"```toml\n(\[gpio\].*?)```", page, re.S)
    assert snippet is not None
    gpio = tomllib.loads(snippet.group(1))["gpio"]
    config = config_from_dict({"gpio": gpio})
    assert (config.gpio.call_button, config.gpio.led) == (DEFAULT_CALL_BUTTON_PIN, DEFAULT_LED_PIN)


def test_configuration_reference_documents_every_key() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    for section, model in Config.model_fields.items():
        if section == "source_path":
            continue
        assert f"## `[{section}]`" in page, section
        for key in model.annotation.model_fields:  # type: ignore[union-attr]
            assert f"`{key}`" in page, f"[{section}] {key} is not documented"
