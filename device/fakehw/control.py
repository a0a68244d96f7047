"""Steer the fake camera from outside its process (tests, demos).

The daemon runs as a subprocess, so faults are injected through files in a
directory named by ``PEERCAM_FAKE_HW_DIR`` (default: a per-user directory
under the system temp dir):

- ``camera.json`` (written by tests, read by the fake on every camera open
  and about ten times a second while a camera runs)::

      {"cameras": ["imx708"],   # models present; [] = none (or unplugged)
       "platform": "vc4",       # "vc4" (Pi 4 and older: V4L2 hardware
                                #  encoder) or "pisp" (Pi 5: software only)
       "stall": false,          # running cameras deliver no frame while true
       "wedge": 0,              # bump it: cameras running now stop delivering
                                #  frames for good; cameras opened later work
       "scene": "bars",         # the picture: "bars" (with the bouncing box)
                                #  or "doorway" (still, for motion tests)
       "visitor": 0}            # bump it: a scripted visitor (a person-sized
                                #  block) walks through the running cameras

- ``camera<N>.lock``: the fake locks it (``lockf``) while camera N is open,
  like libcamera locks the media device, so another process holding it
  makes ``Picamera2()`` fail with "Device or resource busy".
  ``hold_camera()`` does that from a test.

- ``state.json`` (written by the fake, read by tests): what the hardware is
  doing: ``open``, ``running``, counts of opens/starts, the last
  configuration, the encoder's settings, forced key frames, bitrate changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENV_DIR = "PEERCAM_FAKE_HW_DIR"
CONTROL_FILE = "camera.json"
STATE_FILE = "state.json"

log = logging.getLogger("peercam.fakehw")

#: Sensor facts the fake reports per model (a subset of what libcamera says).
MODELS: dict[str, dict[str, Any]] = {
    "imx708": {
        "resolution": (4608, 2592),
        "modes": [((1536, 864), 120.13), ((2304, 1296), 56.03), ((4608, 2592), 14.35)],
        "bit_depth": 10,
        "format": "SRGGB10_CSI2P",
    },
    "imx219": {
        "resolution": (3280, 2464),
        "modes": [
            ((640, 480), 103.33),
            ((1640, 1232), 41.85),
            ((1920, 1080), 47.57),
            ((3280, 2464), 21.19),
        ],
        "bit_depth": 10,
        "format": "SBGGR10_CSI2P",
    },
    "ov5647": {
        "resolution": (2592, 1944),
        "modes": [
            ((640, 480), 58.92),
            ((1296, 972), 46.34),
            ((1920, 1080), 32.81),
            ((2592, 1944), 15.63),
        ],
        "bit_depth": 10,
        "format": "SGBRG10_CSI2P",
    },
}


@dataclass(frozen=True)
class Control:
    cameras: tuple[str, ...] = ("imx708",)
    platform: str = "vc4"
    stall: bool = False
    wedge: int = 0
    scene: str = "bars"
    visitor: int = 0


@dataclass
class State:
    open: bool = False
    running: bool = False
    opens: int = 0
    starts: int = 0
    stops: int = 0
    camera: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    encoder: dict[str, Any] = field(default_factory=dict)
    lores_encoder: dict[str, Any] = field(default_factory=dict)  # the second encoder, if any
    key_frames_forced: int = 0
    bitrates: list[int] = field(default_factory=list)


def hw_dir() -> Path:
    """The control directory (created if missing)."""
    env = os.environ.get(ENV_DIR)
    path = Path(env) if env else Path(tempfile.gettempdir()) / f"peercam-fakehw-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_control(directory: Path | None = None) -> Control:
    """The current control settings; defaults when the file is missing or unreadable."""
    path = (directory or hw_dir()) / CONTROL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Control()
    except (OSError, ValueError) as exc:
        log.warning("fake camera: ignoring unreadable %s: %s", path, exc)
        return Control()
    cameras = data.get("cameras", list(Control.cameras))
    unknown = [m for m in cameras if m not in MODELS]
    if unknown:
        log.warning("fake camera: unknown model(s) %s; known: %s", unknown, sorted(MODELS))
    return Control(
        cameras=tuple(m for m in cameras if m in MODELS),
        platform=str(data.get("platform", "vc4")),
        stall=bool(data.get("stall", False)),
        wedge=int(data.get("wedge", 0)),
        scene="doorway" if data.get("scene") == "doorway" else "bars",
        visitor=int(data.get("visitor", 0)),
    )


def write_control(directory: Path | None = None, **changes: Any) -> Control:
    """Change some control settings (the rest keep their current values)."""
    directory = directory or hw_dir()
    current = asdict(read_control(directory))
    current.update(changes)
    current["cameras"] = list(current["cameras"])
    _atomic_write(directory / CONTROL_FILE, current)
    return read_control(directory)


def read_state(directory: Path | None = None) -> State:
    path = (directory or hw_dir()) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return State()
    return State(**{k: v for k, v in data.items() if k in State.__dataclass_fields__})


class StateWriter:
    """The fake's side of ``state.json``: one writer per process, thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self.state = read_state(directory)

    def update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self.state, key, value)
            _atomic_write(self.directory / STATE_FILE, asdict(self.state))

    def add(self, key: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self.state, key, getattr(self.state, key) + amount)
            _atomic_write(self.directory / STATE_FILE, asdict(self.state))

    def append(self, key: str, value: Any) -> None:
        with self._lock:
            getattr(self.state, key).append(value)
            _atomic_write(self.directory / STATE_FILE, asdict(self.state))


def lock_path(index: int, directory: Path | None = None) -> Path:
    return (directory or hw_dir()) / f"camera{index}.lock"


@contextlib.contextmanager
def hold_camera(index: int = 0, directory: Path | None = None) -> Iterator[None]:
    """Hold camera ``index`` as another process would (the fake then says busy).

    ``lockf`` locks belong to a process: call this from a process other than
    the one whose camera should be busy (a test holding it against the daemon).
    """
    fd = os.open(lock_path(index, directory), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
