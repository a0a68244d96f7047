"""A local Web Push endpoint that checks what a real push service checks.

A browser's side is simulated with keys the test makes (``new_subscription``:
a P-256 key pair and an auth secret, as ``PushManager.subscribe`` would). The
endpoint verifies the VAPID ``Authorization`` (RFC 8292: ES256 JWT signed
with the key in ``k=``, ``aud`` = this origin, ``exp`` within 24 h, ``sub``
mailto:/https:), the ``TTL`` header and the 4096-byte limit, then decrypts
the ``aes128gcm`` body (RFC 8291) with the "browser's" private key: a push a
real browser would drop silently fails here loudly.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.http_sink import HttpSink, Request


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(slots=True)
class Browser:
    """One subscription's keys, as a browser holds them."""

    name: str
    key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str

    def subscription(self) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }


@dataclass(slots=True)
class Push:
    browser: str
    headers: dict[str, str]
    claims: dict[str, Any]
    vapid_key: str
    size: int
    message: dict[str, Any]


@dataclass
class PushService:
    sink: HttpSink = field(init=False)
    browsers: dict[str, Browser] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # browsers whose subscription expired (410)
    pushes: list[Push] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sink = HttpSink(check=self._check)

    def start(self) -> PushService:
        self.sink.start()
        return self

    def stop(self) -> None:
        self.sink.stop()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.sink.port}"

    def new_subscription(self, name: str) -> Browser:
        browser = Browser(
            name,
            ec.generate_private_key(ec.SECP256R1()),
            os.urandom(16),
            f"{self.origin}/wpush/{name}-{b64url(os.urandom(6))}",
        )
        self.browsers[browser.endpoint.rsplit("/", 1)[1]] = browser
        return browser

    def pushes_to(self, name: str) -> list[Push]:
        return [p for p in self.pushes if p.browser == name]

    # --- what a push service checks -------------------------------------------------------

    def _check(self, request: Request) -> int:
        try:
            browser = self.browsers[request.path.rsplit("/", 1)[1]]
        except KeyError:
            return 404
        if browser.name in self.gone:
            return 410
        try:
            push = self._verify(browser, request)
        except AssertionError as exc:
            self.problems.append(f"{browser.name}: {exc}")
            return 400
        self.pushes.append(push)
        return 201

    def _verify(self, browser: Browser, request: Request) -> Push:
        h = request.headers
        auth = h.get("authorization", "")
        assert auth.startswith("vapid "), f"Authorization is not 'vapid t=..,k=..': {auth[:40]!r}"
        params = dict(p.strip().split("=", 1) for p in auth[6:].split(","))
        token, key = params["t"], params["k"]
        head_b64, claims_b64, sig_b64 = token.split(".")
        header = json.loads(unb64url(head_b64))
        assert header.get("alg") == "ES256", f"JWT alg {header.get('alg')!r}, not ES256"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
        sig = unb64url(sig_b64)
        assert len(sig) == 64, "an ES256 JWT signature is r||s, 64 bytes"
        der = encode_dss_signature(int.from_bytes(sig[:32]), int.from_bytes(sig[32:]))
        try:
            public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AssertionError("the VAPID JWT signature does not verify with k=") from None
        claims = json.loads(unb64url(claims_b64))
        assert claims.get("aud") == self.origin, f"aud {claims.get('aud')!r} != {self.origin}"
        now = time.time()
        assert now < claims["exp"] <= now + 24 * 3600 + 60, f"exp {claims['exp']} not within 24 h"
        assert str(claims.get("sub", "")).startswith(("mailto:", "https:")), "bad sub"
        assert h.get("content-encoding") == "aes128gcm", h.get("content-encoding")
        assert "ttl" in h, "no TTL header"
        assert len(request.body) <= 4096, f"{len(request.body)} bytes is over 4096"
        plain = http_ece.decrypt(
            request.body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm"
        )
        return Push(browser.name, h, claims, key, len(request.body), json.loads(plain))
