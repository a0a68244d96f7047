"""Property-based fuzzing of config loading: any file gives a Config or a ConfigError.

A person edits ``/etc/peercam/peercam.toml`` by hand on a headless Pi; a
typo must end in one readable message naming the file (exit code 2), never
in a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from peercam.config import Config, ConfigError, load_config
from tests.daemon_proc import toml_value

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SCHEMA = {
    name: list(model.annotation.model_fields)  # type: ignore[union-attr]
    for name, model in Config.model_fields.items()
    if name != "source_path"
}


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40).filter(lambda t: "\x00" not in t),
    st.sampled_from(["mqtt://127.0.0.1:1883", "ws://h/p", "stun:x:3478", "10.0.0.0/8", "alsa:"]),
    st.datetimes(timezones=st.none()),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def configs(draw: st.DrawFn) -> str:
    """TOML text shaped like peercam's config, with keys right, wrong, missing or extra."""
    lines: list[str] = []
    sections = draw(st.lists(st.sampled_from([*SCHEMA, "bogus"]), max_size=5, unique=True))
    if draw(st.booleans()):
        lines.append(f"{json.dumps(draw(st.text(max_size=8)))} = {toml_value(draw(values))}")
    for section in sections:
        lines.append(f"[{section}]")
        known = SCHEMA.get(section, ["x"])
        keys = draw(st.lists(st.sampled_from(known) | st.text(max_size=8), max_size=5, unique=True))
        for key in keys:
            lines.append(f"{json.dumps(key)} = {toml_value(draw(values))}")
    return "\n".join(lines) + "\n"


def load(tmp_path: Path, text: str | bytes) -> Config | ConfigError:
    path = tmp_path / "peercam.toml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(text)
    try:
        return load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(str(path)), message
        assert "Traceback" not in message
        return exc


@FUZZ
@given(configs())
@example('[webrtc]\nmax_viewers = nan\nconnect_timeout = inf\nhost_networks = ["::1/999"]\n')
@example('[mqtt]\nurl = "mqtt://[::1"\n')
@example('[mqtt]\nurl = "mqtt://h:99999"\n')
@example("source_path = 1\n")
@example('device = "x"\n')
@example("[gpio]\ncall_button = 17\nled = 17\n")
@example('[talkback]\nreplies = [{id = "a", text = "b"}, {id = "a", text = "c"}]\n')
@example("[talkback]\nreplies = [1, {}]\n")
@example("[webrtc]\nice_servers = [[1]]\n")
def test_schema_shaped_files_give_a_config_or_a_config_error(tmp_path: Path, text: str) -> None:
    load(tmp_path, text)


@FUZZ
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400)))
@example(b"\xff\xfe")
@example("[[device]]\n")
@example("[device]\n[device]\n")
@example("a = 1\na = 2\n")
@example("[" * 5000)
def test_any_file_gives_a_config_or_a_config_error(tmp_path: Path, text: str | bytes) -> None:
    load(tmp_path, text)


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    assert isinstance(load_or_error(tmp_path / "nope.toml"), ConfigError)
    assert isinstance(load_or_error(tmp_path), ConfigError)  # a directory


def load_or_error(path: Path) -> Config | ConfigError:
    try:
        return load_config(path)
    except ConfigError as exc:
        return exc
