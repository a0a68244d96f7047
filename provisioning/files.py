"""Writing generated files: atomically, and secrets with 0600 from the first byte."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700


def generate_secret(nbytes: int = 24) -> str:
    """A random URL-safe token (``nbytes`` of entropy): MQTT passwords, TURN secrets."""
    return secrets.token_urlsafe(nbytes)


def ensure_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create ``path`` (and parents) if missing; a new leaf directory gets ``mode``."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
    return path


def write_file(path: Path, text: str, *, mode: int = PUBLIC_MODE) -> Path:
    """Replace ``path`` with ``text`` atomically; the file has ``mode`` before any byte is in it.

    A temporary file in the same folder is created with ``mode`` (so a secret is
    never readable by others, not even for a moment), written, fsynced and
    renamed over the target.
    """
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; set exactly ``mode``
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def write_secret(path: Path, value: str) -> Path:
    """A secret file: the value and a newline, mode 0600."""
    return write_file(path, value + "\n", mode=SECRET_MODE)


def read_secret(path: Path) -> str:
    """The stripped content of a secret file (OSError if it cannot be read)."""
    return path.read_text(encoding="utf-8").strip()
