"""The part of picamera2's API that peercam uses, read from source with ``ast``.

The real picamera2 cannot be imported off a Raspberry Pi (it imports
libcamera at once), so its API is read from its source text instead: for
each class and method peercam (or its fake) relies on, the parameter list
exactly as written (``ast.unparse``), the decorators and the base classes.

``tests/data/picamera2_api.json`` holds that for several picamera2 releases,
made with::

    pip download --no-deps picamera2==0.3.38
    python -m tests.picamera2_api --git /path/to/picamera2.git v0.3.17 v0.3.36 ... \
        --wheel picamera2-0.3.38-py3-none-any.whl

Releases newer than the git mirror's tags are read from PyPI's wheel (the
same ``picamera2/`` tree), recorded with the wheel's name and sha256.

``tests/test_fake_picamera2.py`` extracts the same from the fake in
``device/fakehw/site`` and compares, so the fake cannot drift from the real
signatures unnoticed.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: file -> class -> members peercam's source or the fake's contract depends on.
SYMBOLS: dict[str, dict[str, list[str]]] = {
    "picamera2/picamera2.py": {
        "Picamera2": [
            "global_camera_info",
            "__init__",
            "camera_properties",
            "camera_controls",
            "sensor_modes",
            "close",
            "create_video_configuration",
            "configure",
            "camera_configuration",
            "start",
            "stop",
            "set_controls",
            "start_encoder",
            "stop_encoder",
            "start_recording",
            "stop_recording",
            "__enter__",
            "__exit__",
        ]
    },
    "picamera2/encoders/encoder.py": {
        "Encoder": [
            "__init__",
            "running",
            "output",
            "encode",
            "_encode",
            "start",
            "_start",
            "stop",
            "_stop",
            "outputframe",
            "_setup",
            "_timestamp",
        ]
    },
    "picamera2/encoders/v4l2_encoder.py": {
        "V4L2Encoder": ["__init__", "_start", "_stop", "_encode"]
    },
    "picamera2/encoders/h264_encoder.py": {
        "H264Encoder": ["__init__", "_start", "_setup", "force_key_frame"]
    },
    "picamera2/encoders/libav_h264_encoder.py": {
        "LibavH264Encoder": ["__init__", "_setup", "_start", "_stop", "_encode", "force_key_frame"]
    },
    "picamera2/outputs/output.py": {"Output": ["__init__", "start", "stop", "outputframe"]},
}

#: package __init__ files and the names they must make importable.
EXPORTS: dict[str, list[str]] = {
    "picamera2/__init__.py": ["Picamera2"],
    "picamera2/encoders/__init__.py": ["Encoder", "Quality", "H264Encoder", "LibavH264Encoder"],
    "picamera2/outputs/__init__.py": ["Output"],
}


def _decorators(node: ast.FunctionDef) -> list[str]:
    return [ast.unparse(d) for d in node.decorator_list]


def extract_file(text: str, classes: dict[str, list[str]]) -> dict[str, Any]:
    """``{class: {"bases": [...], "members": {name: {"args": ..., "decorators": [...]}}}}``.

    A member listed but missing from the source is recorded as ``None``.  A
    property with a setter is recorded once, from its getter.
    """
    tree = ast.parse(text)
    out: dict[str, Any] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name not in classes:
            continue
        members: dict[str, Any] = {name: None for name in classes[node.name]}
        for item in node.body:
            if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if item.name not in members or members[item.name] is not None:
                continue  # overload stubs and property setters come after the first
            members[item.name] = {
                "args": ast.unparse(item.args),
                "decorators": _decorators(item),
            }
        out[node.name] = {"bases": [ast.unparse(b) for b in node.bases], "members": members}
    return out


def extract_exports(text: str) -> list[str]:
    """Every name an ``__init__`` binds by import (``from x import A as B`` binds B)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom | ast.Import):
            names += [alias.asname or alias.name for alias in node.names]
    return sorted(set(names))


def extract(read: Callable[[str], str | None]) -> dict[str, Any]:
    """The API snapshot of one picamera2 tree; ``read(path)`` returns a file or None."""
    api: dict[str, Any] = {"classes": {}, "exports": {}}
    for path, classes in SYMBOLS.items():
        text = read(path)
        api["classes"][path] = None if text is None else extract_file(text, classes)
    for path, wanted in EXPORTS.items():
        text = read(path)
        found = [] if text is None else extract_exports(text)
        api["exports"][path] = {name: name in found for name in wanted}
    return api


def extract_dir(root: Path) -> dict[str, Any]:
    def read(path: str) -> str | None:
        file = root / path
        return file.read_text(encoding="utf-8") if file.is_file() else None

    return extract(read)


def extract_git(git_dir: Path, ref: str) -> dict[str, Any]:
    def read(path: str) -> str | None:
        result = subprocess.run(
            ["git", "--git-dir", str(git_dir), "show", f"{ref}:{path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout if result.returncode == 0 else None

    commit = subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-parse", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"ref": ref, "commit": commit, **extract(read)}


def extract_wheel(wheel: Path) -> dict[str, Any]:
    """The API snapshot of a picamera2 wheel from PyPI (``pip download --no-deps``)."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())

        def read(path: str) -> str | None:
            return archive.read(path).decode("utf-8") if path in names else None

        api = extract(read)
    version = wheel.name.split("-")[1]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return {"ref": f"v{version}", "wheel": wheel.name, "sha256": digest, **api}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git", type=Path, required=True, help="a picamera2 git directory")
    parser.add_argument("refs", nargs="+", help="tags or commits, oldest first")
    parser.add_argument(
        "--wheel", type=Path, action="append", default=[], help="a newer release's PyPI wheel"
    )
    args = parser.parse_args(argv)
    wheels = "".join(f" --wheel {w.name}" for w in args.wheel)
    snapshot = {
        "source": (
            "https://github.com/raspberrypi/picamera2 (tags), "
            "https://pypi.org/project/picamera2/ (wheels)"
        ),
        "made_by": "python -m tests.picamera2_api --git DIR " + " ".join(args.refs) + wheels,
        "versions": [extract_git(args.git, ref) for ref in args.refs]
        + [extract_wheel(w) for w in args.wheel],
    }
    json.dump(snapshot, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
