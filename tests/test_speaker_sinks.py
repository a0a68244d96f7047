"""The speaker's ALSA sink (``aplay``), with a stand-in ``aplay`` on PATH.

The stand-in behaves as alsa-utils' aplay does where it matters: it reads
raw PCM from stdin and complains on stderr ("underrun!!!" even with -q), or
stops with a reason.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

import pytest

from peercam.talkback import AplaySink

CHATTY = """#!/bin/sh
# an aplay on a jittery link: a complaint per chunk, far more than a pipe holds
while dd bs=1920 count=1 status=none > /dev/null; do
  i=0
  while [ $i -lt 40 ]; do echo "underrun!!! (at least 0.123 ms long)" >&2; i=$((i+1)); done
done
"""

REFUSING = """#!/bin/sh
echo "aplay: main:831: audio open error: Device or resource busy" >&2
exit 1
"""


def install_aplay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aplay = bin_dir / "aplay"
    aplay.write_text(script)
    aplay.chmod(aplay.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_a_chatty_aplay_never_blocks_the_speaker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~1.5 MB of stderr in one call: a pipe nobody read used to fill (64 KiB) and block."""
    install_aplay(tmp_path, monkeypatch, CHATTY)
    sink = AplaySink("plughw:9,0")
    chunk = bytes(1920)  # 20 ms of 48 kHz mono S16
    done = threading.Event()

    def play() -> None:
        with contextlib.suppress(OSError):  # aplay killed by the test after a block
            for _ in range(1000):  # 20 s of audio, written as fast as aplay takes it
                sink.write(chunk)
            done.set()

    player = threading.Thread(target=play, daemon=True)
    player.start()
    player.join(60)
    finished = done.is_set()
    if not finished and sink._proc is not None:
        sink._proc.kill()  # unblock the writer, so the test ends and says why
        player.join(5)
    sink.close()
    assert finished, "writing to aplay blocked"


def test_aplay_refusing_the_device_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_aplay(tmp_path, monkeypatch, REFUSING)
    sink = AplaySink("plughw:9,0")
    with pytest.raises(OSError, match=r"aplay -D plughw:9,0 stopped: .*Device or resource busy"):
        for _ in range(200):  # the first writes may land in the pipe before aplay exits
            sink.write(bytes(1920))
    sink.close()
