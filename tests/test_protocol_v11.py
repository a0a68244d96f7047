"""Validation of the messages v1.1 added (docs/PROTOCOL.md `Added in v1.1: ...`).

Each new viewer-sent type parses into its typed message, and an ill-formed
one becomes a ProtocolError with the code and the field a viewer can act on;
types only devices send are refused as `unsupported`, never silently dropped.
"""

from __future__ import annotations

import base64
import json

import pytest

from peercam.notify.webpush import parse_subscription
from peercam.protocol import (
    DEVICE_TYPES,
    ErrorCode,
    Open,
    ProtocolError,
    PushSubscribe,
    PushUnsubscribe,
    Reply,
    parse_viewer_message,
)

SID = "abcdefgh1234"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# A syntactically valid subscription: 0x04 + 64 bytes (uncompressed P-256 form) and a
# 16-byte auth secret.  parse_subscription checks shape and sizes, not the curve.
GOOD = {
    "endpoint": "https://push.example.net/wpush/v2/abc",
    "keys": {"p256dh": b64url(b"\x04" + b"\x11" * 64), "auth": b64url(b"\x22" * 16)},
}


def parse(obj: object) -> object:
    return parse_viewer_message(json.dumps(obj).encode())


def refused(obj: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(obj)
    return info.value


def test_new_viewer_types_become_typed() -> None:
    assert parse({"v": 1, "type": "reply", "reply": "coming"}) == Reply("coming")
    assert parse({"v": 1, "type": "open"}) == Open()
    assert parse({"v": 1, "type": "push-subscribe", "subscription": GOOD}) == PushSubscribe(GOOD)
    assert parse({"v": 1, "type": "push-unsubscribe", "endpoint": GOOD["endpoint"]}) == (
        PushUnsubscribe(GOOD["endpoint"])
    )


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"v": 1, "type": "reply"}, "field 'reply' is missing"),
        ({"v": 1, "type": "reply", "reply": 3}, "field 'reply' must be a string, got integer"),
        ({"v": 1, "type": "reply", "reply": "Be right there"}, "status.replies"),
        ({"v": 1, "type": "push-subscribe"}, "field 'subscription' is missing"),
        (
            {"v": 1, "type": "push-subscribe", "subscription": "nope"},
            "field 'subscription' must be an object, got string",
        ),
        (
            {"v": 1, "type": "push-subscribe", "subscription": [GOOD]},
            "field 'subscription' must be an object, got array",
        ),
        ({"v": 1, "type": "push-unsubscribe"}, "field 'endpoint' is missing"),
        ({"v": 1, "type": "push-unsubscribe", "endpoint": None}, "must be a string, got null"),
        (
            {"v": 1, "type": "push-unsubscribe", "endpoint": "https://p.example/" + "x" * 2100},
            "'endpoint' is too long",
        ),
    ],
)
def test_ill_formed_new_messages_are_bad_requests(payload: object, words: str) -> None:
    error = refused(payload)
    assert error.code is ErrorCode.BAD_REQUEST
    assert words in error.message


@pytest.mark.parametrize(
    "kind", sorted(DEVICE_TYPES | {"opened", "calls", "push-subscribed", "push-unsubscribed"})
)
def test_device_only_types_from_a_viewer_are_unsupported(kind: str) -> None:
    error = refused({"v": 1, "type": kind, "session": SID})
    assert error.code is ErrorCode.UNSUPPORTED
    assert "sent by devices" in error.message
    assert error.session == SID


def test_a_type_from_a_later_version_is_unsupported_not_ignored() -> None:
    error = refused({"v": 1, "type": "relay-claim", "session": SID})
    assert error.code is ErrorCode.UNSUPPORTED
    assert "unknown message type 'relay-claim'" in error.message


def test_a_good_subscription_is_accepted() -> None:
    sub = parse_subscription("alice", GOOD)
    assert (sub.viewer, sub.endpoint, sub.origin) == (
        "alice",
        GOOD["endpoint"],
        "https://push.example.net",
    )
    # Plain http only for a push service on this machine (the tests' local one).
    assert parse_subscription("alice", {**GOOD, "endpoint": "http://127.0.0.1:9/p"}).endpoint


@pytest.mark.parametrize(
    ("subscription", "words"),
    [
        ({**GOOD, "endpoint": "http://192.0.2.9/wpush/x"}, "'endpoint' must be an https://"),
        ({**GOOD, "endpoint": "ftp://push.example.net/x"}, "'endpoint' must be an https://"),
        ({**GOOD, "endpoint": "https://p"}, "'endpoint' must be a URL"),
        ({**GOOD, "endpoint": "https://p.example/" + "x" * 2100}, "'endpoint' must be a URL"),
        ({"endpoint": GOOD["endpoint"]}, "'keys' must be an object"),
        ({**GOOD, "keys": {"auth": GOOD["keys"]["auth"]}}, "'keys.p256dh'"),
        ({**GOOD, "keys": {**GOOD["keys"], "p256dh": b64url(b"\x04" * 33)}}, "'keys.p256dh'"),
        ({**GOOD, "keys": {**GOOD["keys"], "p256dh": "!!not base64!!"}}, "'keys.p256dh'"),
        ({**GOOD, "keys": {**GOOD["keys"], "auth": b64url(b"\x22" * 8)}}, "'keys.auth'"),
        ({**GOOD, "keys": {**GOOD["keys"], "auth": 16}}, "'keys.auth'"),
    ],
)
def test_bad_subscriptions_name_the_field(subscription: object, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_subscription("alice", subscription)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert "field 'subscription'" in info.value.message
    assert words in info.value.message
