"""The fake picamera2 against the real one: signatures, threads, errors, bytes.

``tests/data/picamera2_api.json`` is read from the real picamera2 source
(releases 0.3.17 to 0.3.36 from git, commits recorded in the file, and
0.3.38 from PyPI's wheel, its sha256 recorded; regenerate with
``python -m tests.picamera2_api``).  The fake must match the newest release
exactly; what peercam calls must exist in every release it supports.
"""

from __future__ import annotations

import ast
import errno
import fcntl
import json
import os
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peercam import fakehw
from peercam.fakehw import control
from peercam.sources import h264, v4l2
from tests.picamera2_api import extract_dir

SNAPSHOT = json.loads((Path(__file__).parent / "data" / "picamera2_api.json").read_text())
NEWEST = SNAPSHOT["versions"][-1]


def params(args_text: str) -> dict[str, str | None]:
    """``{name: default source or None}`` of an ``ast.unparse``-d parameter list."""
    fn = ast.parse(f"def f({args_text}): pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    positional = fn.args.posonlyargs + fn.args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(fn.args.defaults))
    defaults += list(fn.args.defaults)
    out = {
        a.arg: (ast.unparse(d) if d is not None else None)
        for a, d in zip(positional, defaults, strict=True)
    }
    for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True):
        out[a.arg] = ast.unparse(d) if d is not None else None
    return out


# --- the fake's API is the real one's ------------------------------------------------------


def test_the_snapshot_records_where_it_comes_from() -> None:
    refs = [v["ref"] for v in SNAPSHOT["versions"]]
    assert refs[-1] == "v0.3.38" and "v0.3.36" in refs and "v0.3.17" in refs
    for version in SNAPSHOT["versions"]:
        if "wheel" in version:
            assert version["wheel"] == f"picamera2-{version['ref'][1:]}-py3-none-any.whl"
            assert len(version["sha256"]) == 64
        else:
            assert len(version["commit"]) == 40


@pytest.mark.parametrize(
    "path, cls, member",
    [
        (path, cls, member)
        for path, classes in NEWEST["classes"].items()
        for cls, info in classes.items()
        for member in info["members"]
    ],
)
def test_the_fake_has_the_real_signature(path: str, cls: str, member: str) -> None:
    real = NEWEST["classes"][path][cls]
    fake = extract_dir(fakehw.SITE)["classes"][path]
    assert fake is not None, f"the fake has no {path}"
    assert cls in fake, f"the fake's {path} has no class {cls}"
    assert fake[cls]["bases"] == real["bases"], f"{cls} bases"
    assert fake[cls]["members"][member] == real["members"][member], f"{cls}.{member}"


def test_the_fake_exports_the_real_names() -> None:
    fake = extract_dir(fakehw.SITE)["exports"]
    assert fake == NEWEST["exports"]


# --- what peercam calls exists in every supported release ------------------------------------

#: (file, class, member, keyword arguments peercam passes)
PEERCAM_CALLS = [
    ("picamera2/picamera2.py", "Picamera2", "__init__", {"camera_num"}),
    (
        "picamera2/picamera2.py",
        "Picamera2",
        "create_video_configuration",
        {"main", "transform", "controls"},
    ),
    ("picamera2/picamera2.py", "Picamera2", "configure", {"camera_config"}),
    ("picamera2/picamera2.py", "Picamera2", "start_recording", {"encoder", "output"}),
    ("picamera2/picamera2.py", "Picamera2", "stop_recording", set()),
    ("picamera2/picamera2.py", "Picamera2", "close", set()),
    ("picamera2/picamera2.py", "Picamera2", "global_camera_info", set()),
    (
        "picamera2/encoders/h264_encoder.py",
        "H264Encoder",
        "__init__",
        {"bitrate", "repeat", "iperiod", "framerate", "profile"},
    ),
    (
        "picamera2/encoders/libav_h264_encoder.py",
        "LibavH264Encoder",
        "__init__",
        {"bitrate", "repeat", "iperiod", "framerate", "profile"},
    ),
    ("picamera2/outputs/output.py", "Output", "__init__", set()),
]


@pytest.mark.parametrize("version", SNAPSHOT["versions"], ids=lambda v: v["ref"])
def test_every_supported_release_takes_peercams_calls(version: dict[str, Any]) -> None:
    for path, cls, member, kwargs in PEERCAM_CALLS:
        info = version["classes"][path][cls]["members"][member]
        assert info is not None, f"{version['ref']}: {cls}.{member} missing"
        missing = kwargs - set(params(info["args"]))
        assert not missing, f"{version['ref']}: {cls}.{member} lacks {missing}"
    # The encoder calls outputs with 3 (0.3.17) or 5 (0.3.23+) positional arguments;
    # peercam's Output takes both, with the defaults of the newest release.
    out = version["classes"]["picamera2/outputs/output.py"]["Output"]["members"]["outputframe"]
    newest = params(
        NEWEST["classes"]["picamera2/outputs/output.py"]["Output"]["members"]["outputframe"]["args"]
    )
    assert set(params(out["args"])) <= set(newest)


def test_force_key_frame_arrived_in_0_3_32() -> None:
    """The source falls back to the V4L2 control before that (checked with hasattr)."""
    for version in SNAPSHOT["versions"]:
        member = version["classes"]["picamera2/encoders/h264_encoder.py"]["H264Encoder"]["members"][
            "force_key_frame"
        ]
        newer = tuple(int(x) for x in version["ref"].lstrip("v").split(".")) >= (0, 3, 32)
        assert (member is not None) == newer, version["ref"]


# --- behaviour -----------------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake picamera2 importable in this process, with its own control directory."""
    monkeypatch.setenv(control.ENV_DIR, str(tmp_path))
    fakehw.install()
    yield tmp_path


def record_output() -> Any:
    from picamera2.outputs import Output

    class Recorder(Output):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
            self.event = threading.Event()

        def outputframe(self, *args: Any, **kwargs: Any) -> None:
            self.calls.append((threading.current_thread().name, args, kwargs))
            if len(self.calls) >= 70:
                self.event.set()

    return Recorder()


def record(encoder: Any, seconds_or_frames: int = 70) -> Any:
    from libcamera import Transform
    from picamera2 import Picamera2

    out = record_output()
    with Picamera2() as camera:
        camera.configure(
            camera.create_video_configuration(
                main={"size": (320, 240), "format": "YUV420"},
                transform=Transform(),
                controls={"FrameDurationLimits": (33333, 33333)},
            )
        )
        camera.start_recording(encoder, out)
        assert out.event.wait(20), f"only {len(out.calls)} frames"
        camera.stop_recording()
    return out


def test_outputframe_comes_from_the_encoder_thread_with_five_positional_arguments(
    fake: Path,
) -> None:
    from picamera2.encoders import H264Encoder

    out = record(H264Encoder(bitrate=500_000, iperiod=30, profile="baseline"))
    me = threading.current_thread().name
    for thread, args, kwargs in out.calls:
        assert thread != me
        assert kwargs == {} and len(args) == 5
        frame, keyframe, timestamp, packet, audio = args
        assert isinstance(frame, bytes) and isinstance(timestamp, int)
        assert packet is None and audio is False
        assert keyframe == h264.is_idr(frame)
    stamps = [args[2] for _, args, _ in out.calls]
    assert stamps[0] == 0 and stamps == sorted(stamps)
    # Microseconds at 30 fps: about 33 333 apart on average.
    assert 25_000 < (stamps[-1] - stamps[0]) / (len(stamps) - 1) < 45_000


def test_the_hardware_encoder_makes_what_the_pi_makes(fake: Path) -> None:
    from picamera2.encoders import H264Encoder

    out = record(H264Encoder(bitrate=500_000, repeat=True, iperiod=30, profile="baseline"))
    frames = [args[0] for _, args, _ in out.calls]
    idr = [i for i, f in enumerate(frames) if h264.is_idr(f)]
    assert idr[:3] == [0, 30, 60], "IDR every iperiod frames, and only those"
    assert all(h264.has_parameter_sets(frames[i]) for i in idr), "SPS/PPS on every IDR"
    assert h264.is_constrained_baseline(frames[0])
    assert h264.profile_level_id(frames[0]) == "42c028", "level 4.0, the Pi's default"
    assert not any(5 in h264.nal_types(f) for i, f in enumerate(frames) if i not in idr)


def test_without_a_profile_the_encoder_sends_high_profile_as_the_pi_does(fake: Path) -> None:
    from picamera2.encoders import H264Encoder

    out = record(H264Encoder(bitrate=500_000, iperiod=30))
    profile = h264.sps_profile(out.calls[0][1][0])
    assert profile is not None and profile[0] == 100  # High


def test_no_camera_is_the_runtime_error_of_0_3_37_and_later(fake: Path) -> None:
    """0.3.37 replaced the bare IndexError with this RuntimeError (picamera2.py ~345)."""
    from picamera2 import Picamera2

    control.write_control(fake, cameras=[])
    assert Picamera2.global_camera_info() == []
    hint = r' found - use "rpicam-hello --list-cameras" to check connected cameras$'
    with pytest.raises(RuntimeError, match=r"^No camera number 0" + hint):
        Picamera2()
    control.write_control(fake, cameras=["imx708"])
    with pytest.raises(RuntimeError, match=r"^No camera number 1" + hint):
        Picamera2(1)


def test_a_camera_held_by_another_process_is_busy(fake: Path) -> None:
    from picamera2 import Picamera2

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from peercam.fakehw.control import hold_camera\n"
            f"with hold_camera(0, __import__('pathlib').Path({str(fake)!r})):\n"
            "    print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(
            RuntimeError, match=r"^Camera __init__ sequence did not complete\.$"
        ) as info:
            Picamera2()
        cause = info.value.__cause__
        assert isinstance(cause, RuntimeError)
        assert str(cause) == "Failed to acquire camera: Device or resource busy"
    finally:
        holder.communicate("", timeout=10)
    Picamera2().close()  # free again


def test_a_second_open_in_the_same_process_is_busy(fake: Path) -> None:
    from picamera2 import Picamera2

    with Picamera2(), pytest.raises(RuntimeError) as info:
        Picamera2()
    assert "busy" in str(info.value.__cause__)


def test_the_encoder_device_takes_v4l2_controls_and_nothing_else(fake: Path) -> None:
    from picamera2.encoders import H264Encoder

    encoder = H264Encoder(bitrate=500_000, iperiod=600, profile="baseline")
    encoder.width, encoder.height, encoder.framerate = 320, 240, 30
    encoder.output = record_output()
    encoder.start()
    try:
        assert v4l2.device_of(encoder) is encoder.vd
        v4l2.set_control(encoder.vd, v4l2.V4L2_CID_MPEG_VIDEO_BITRATE, 250_000)
        assert encoder.bitrate == 250_000 and control.read_state(fake).bitrates == [250_000]
        with pytest.raises(OSError) as info:
            v4l2.set_control(encoder.vd, 0x00980900, 1)  # V4L2_CID_BRIGHTNESS
        assert info.value.errno == errno.EINVAL
    finally:
        encoder.stop()
    assert v4l2.device_of(encoder) is None, "closed when the encoder stops"
    # Every other descriptor still reaches the kernel.
    read, write = os.pipe()
    try:
        os.write(write, b"abc")
        buf = bytearray(4)
        fcntl.ioctl(read, termios.FIONREAD, buf, True)
        assert int.from_bytes(buf, sys.byteorder) == 3
    finally:
        os.close(read)
        os.close(write)


def went_quiet(calls: list[Any], quiet: float = 0.5, timeout: float = 10.0) -> bool:
    """True once no call was added for ``quiet`` seconds (frames already on their way
    through the encoder may still arrive first); False if they keep coming."""
    deadline = time.monotonic() + timeout
    count, since = len(calls), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        if len(calls) != count:
            count, since = len(calls), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


def test_stall_wedge_and_unplug_stop_the_frames(fake: Path) -> None:
    from picamera2.encoders import H264Encoder

    encoder = H264Encoder(bitrate=500_000, iperiod=30, profile="baseline")
    from libcamera import Transform
    from picamera2 import Picamera2

    out = record_output()
    with Picamera2() as camera:
        camera.configure(
            camera.create_video_configuration(
                main={"size": (320, 240), "format": "YUV420"}, transform=Transform()
            )
        )
        camera.start_recording(encoder, out)
        for change, restore in (
            ({"stall": True}, {"stall": False}),
            ({"cameras": []}, {"cameras": ["imx708"]}),
        ):
            deadline = time.monotonic() + 10
            while len(out.calls) < 10 and time.monotonic() < deadline:
                time.sleep(0.02)
            control.write_control(fake, **change)
            assert went_quiet(out.calls), f"frames kept coming after {change}"
            before = len(out.calls)
            control.write_control(fake, **restore)
            deadline = time.monotonic() + 10
            while len(out.calls) == before and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(out.calls) > before, f"frames did not resume after {restore}"
            out.calls.clear()
        control.write_control(fake, wedge=1)  # this camera is wedged for good
        assert went_quiet(out.calls), "frames kept coming after the wedge"
        camera.stop_recording()
    out.calls.clear()
    out.event.clear()
    record(H264Encoder(bitrate=500_000, iperiod=30, profile="baseline"))  # a new one works
