"""Mosquitto 2 password hashes (``mosquitto_passwd``'s ``$7$`` format) and password files.

Mosquitto 2.0 (``src/password_mosq.c``, ``apps/mosquitto_passwd``) writes one line
per user::

    username:$7$<iterations>$<base64 salt, 12 bytes>$<base64 PBKDF2-HMAC-SHA512, 64 bytes>

with standard base64 (``+/``, padded) and 101 iterations by default.  The broker
reads the iteration count from the line, so any count >= 1 is accepted; we use
more than the default because a viewer may choose its own password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

HASH_TYPE = 7  # pw_sha512_pbkdf2
SALT_LEN = 12
HASH_LEN = 64
#: mosquitto_passwd's default is 101; PBKDF2 cost matters only for chosen passwords.
DEFAULT_ITERATIONS = 1000
MAX_ITERATIONS = 1_000_000

_HASH_RE = re.compile(r"^\$7\$(\d{1,7})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$")


class PasswordHashError(ValueError):
    """A stored hash is not in the ``$7$`` format."""


def _pbkdf2(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, HASH_LEN)


def hash_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """``$7$iterations$salt$hash``, as ``mosquitto_passwd`` writes it."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be 1..{MAX_ITERATIONS}")
    if salt is None:
        salt = secrets.token_bytes(SALT_LEN)
    if len(salt) != SALT_LEN:
        raise ValueError(f"Mosquitto salts are {SALT_LEN} bytes")
    digest = _pbkdf2(password, salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def parse_hash(stored: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest) of a ``$7$`` hash, or PasswordHashError."""
    match = _HASH_RE.fullmatch(stored)
    if match is None:
        raise PasswordHashError("not a Mosquitto $7$ (PBKDF2-SHA512) hash")
    iterations = int(match.group(1))
    salt = base64.b64decode(match.group(2))
    digest = base64.b64decode(match.group(3))
    if not 1 <= iterations <= MAX_ITERATIONS or len(salt) != SALT_LEN or len(digest) != HASH_LEN:
        raise PasswordHashError("a $7$ hash with a wrong iteration count, salt or digest size")
    return iterations, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the ``$7$`` hash ``stored`` (constant-time compare)."""
    iterations, salt, digest = parse_hash(stored)
    return hmac.compare_digest(_pbkdf2(password, salt, iterations), digest)


def render_passwd(entries: Iterable[tuple[str, str]]) -> str:
    """A Mosquitto ``password_file`` from (username, $7$ hash) pairs, sorted by user."""
    lines = []
    for username, stored in sorted(entries):
        if ":" in username or not username.isprintable() or not username:
            raise ValueError(f"user name {username!r} cannot go into a password file")
        parse_hash(stored)
        lines.append(f"{username}:{stored}")
    return "\n".join(lines) + ("\n" if lines else "")


def parse_passwd(text: str) -> dict[str, str]:
    """{username: hash} from a password file (blank lines and ``#`` comments skipped)."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        username, sep, stored = line.partition(":")
        if not sep:
            raise PasswordHashError(f"line {number}: no ':' between user name and hash")
        users[username] = stored
    return users
