"""Microphone sources: one Opus encoder for everyone, ALSA errors said precisely."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import av
import numpy as np

from peercam.hub import MediaHub
from peercam.sources import audio
from peercam.sources.audio import (
    FRAME_US,
    TestToneSource,
    _sound_cards,
    describe_alsa_error,
    use_system_alsa_config,
)


async def test_the_tone_is_encoded_once_and_every_subscriber_gets_the_same_packets() -> None:
    hub = MediaHub(TestToneSource(), kind="audio", queue_frames=100, idle_stop=0.1)
    alice, bob = hub.subscribe("alice"), hub.subscribe("bob")
    got_alice = [await asyncio.wait_for(alice.get(), 10) for _ in range(25)]
    got_bob = [await asyncio.wait_for(bob.get(), 10) for _ in range(25)]
    assert all(a is b for a, b in zip(got_alice, got_bob, strict=True)), "the same objects"
    pts = [f.pts for f in got_alice]
    assert all(b - a == FRAME_US for a, b in itertools.pairwise(pts)), "20 ms apart"
    await hub.close()

    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout, decoder.format = 48_000, "mono", "s16"
    pcm = np.concatenate(
        [f.to_ndarray().reshape(-1) for p in got_alice for f in decoder.decode(av.Packet(p.data))]
    )
    spectrum = np.abs(np.fft.rfft(pcm[4800:].astype(float)))
    peak = np.fft.rfftfreq(len(pcm[4800:]), 1 / 48_000)[int(np.argmax(spectrum))]
    assert abs(peak - 440) < 5


async def test_a_restarted_tone_continues_the_timeline() -> None:
    source = TestToneSource()
    got: list = []
    await source.start(got.append, lambda m: None)
    await asyncio.sleep(0.2)
    await source.stop()
    first = len(got)
    await source.start(got.append, lambda m: None)
    await asyncio.sleep(0.2)
    await source.stop()
    pts = [f.pts for f in got]
    assert first > 0 and len(got) > first
    assert pts == list(range(0, len(pts) * FRAME_US, FRAME_US))


def test_alsa_errors_name_the_fix() -> None:
    busy = describe_alsa_error("plughw:1,0", "Device or resource busy")
    assert busy.startswith("alsa:plughw:1,0 is busy") and "fuser -v /dev/snd/*" in busy
    denied = describe_alsa_error("plughw:1,0", "Permission denied")
    assert "sudo usermod -aG audio" in denied
    missing = describe_alsa_error("plughw:1,0", "No such file or directory")
    assert "not found" in missing and "arecord -l" in missing
    assert all(m.endswith("; continuing with video only") for m in (busy, denied, missing))


def test_sound_cards_are_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cards").write_text(
        " 0 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0\n"
        "                      vc4-hdmi-0\n"
        " 1 [Device         ]: USB-Audio - USB PnP Sound Device\n",
        encoding="utf-8",
    )
    assert _sound_cards(tmp_path) == {"0": "vc4hdmi0", "1": "Device"}
    assert _sound_cards(tmp_path / "nothing") is None


def test_a_bundled_libasound_is_pointed_at_the_system_config(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "alsa.conf").write_text("", encoding="utf-8")
    monkeypatch.setattr(audio, "SYSTEM_ALSA", tmp_path)
    env: dict[str, str] = {}
    assert use_system_alsa_config(env)
    assert env == {"ALSA_CONFIG_DIR": str(tmp_path), "ALSA_CONFIG_PATH": f"{tmp_path}/alsa.conf"}
    assert not use_system_alsa_config({"ALSA_CONFIG_PATH": "/etc/mine.conf"}), "left alone"
