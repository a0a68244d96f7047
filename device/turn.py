"""Short-lived TURN credentials (coturn ``use-auth-secret``, the TURN REST API scheme).

username   = "{unix expiry}:{viewer}"
credential = base64(HMAC-SHA1(secret, username))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    username: str
    credential: str
    expires_at: int


def mint(secret: str, user: str, ttl: int, *, now: float | None = None) -> TurnCredentials:
    expires_at = int(now if now is not None else time.time()) + int(ttl)
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode("ascii"), expires_at)
