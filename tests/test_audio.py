"""Microphone sources: one Opus encoder for everyone, ALSA errors said precisely."""

from __future__ import annotations

import asyncio
import errno
import itertools
import threading
from pathlib import Path

import av
import numpy as np

from peercam.hub import MediaHub, SourceState
from peercam.sources import audio
from peercam.sources.audio import (
    FRAME_US,
    TestToneSource,
    _sound_cards,
    describe_alsa_error,
    use_system_alsa_config,
)
from tests.waiting import wait_until


async def test_the_tone_is_encoded_once_and_every_subscriber_gets_the_same_packets() -> None:
    hub = MediaHub(TestToneSource(), kind="audio", queue_frames=100, idle_stop=0.1)
    alice, bob = hub.subscribe("alice"), hub.subscribe("bob")
    alice.activate()  # both take packets from now on (a subscription takes none before)
    bob.activate()
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

    async def run_until(count: int) -> None:
        await source.start(got.append, lambda m: None)
        await wait_until(lambda: len(got) >= count, f"{count} packets")
        await source.stop()

    await run_until(5)
    first = len(got)
    await run_until(first + 5)
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


class UnpluggableMic(audio.AlsaSource):
    """A USB microphone at the hardware boundary: ALSA's open and read, scripted.

    Everything above the driver (the capture thread, Opus, the hand-over, the
    error messages, the hub's restarts) is the real code.
    """

    def __init__(self) -> None:
        super().__init__("plughw:1,0")
        self.present = True
        self.unplugged = threading.Event()
        self.opens = 0

    def _open_input(self) -> object:
        self.opens += 1
        if not self.present:
            raise audio.MicrophoneError(
                describe_alsa_error(self.device, "No such file or directory")
            )
        return object()

    def _close_input(self, source: object) -> None:
        pass

    def _frames(self, run, source):  # type: ignore[no-untyped-def]
        tone = TestToneSource()._frames(run, None)
        for frame in tone:
            if self.unplugged.is_set():
                raise OSError(errno.ENODEV, "No such device")
            yield frame


async def test_a_microphone_unplugged_mid_stream_is_reported_and_picked_up_again() -> None:
    mic = UnpluggableMic()
    states: list[str] = []
    # stall_timeout: far above a busy machine's gaps between frames (a stall would
    # overwrite the cause), short enough to restart the unplugged source quickly.
    hub = MediaHub(mic, kind="audio", queue_frames=25, idle_stop=1, stall_timeout=2)
    hub._on_state_change = lambda: states.append(f"{hub.state}: {hub.fault}")
    sub = hub.subscribe("alice")
    try:
        first = await asyncio.wait_for(sub.get(), 10)
        mic.present = False
        mic.unplugged.set()
        await wait_until(lambda: "stopped delivering" in (hub.fault or ""), "the read error")
        assert hub.fault == (
            "alsa:plughw:1,0 stopped delivering (No such device; unplugged?); "
            "continuing with video only"
        )
        await wait_until(lambda: "not found" in (hub.fault or ""), "a retry, the mic still gone")
        mic.unplugged.clear()
        mic.present = True  # plugged back in
        await wait_until(
            lambda: hub.state is SourceState.STREAMING and hub.fault is None, "streaming again"
        )
        await wait_until(lambda: sub.queued > 0, "a packet after the replug")
        later = sub._queue[-1]
        assert mic.opens >= 3
        assert later.pts > first.pts
        assert any("stopped delivering" in s for s in states), states
        assert not any("no audio frame" in s for s in states), states  # the cause stays shown
        assert states[-1] == "streaming: None", states
    finally:
        await hub.close()
