"""Property-based fuzzing of the edge: no payload makes ``parse_viewer_message`` misbehave.

Whatever bytes arrive on an ``in`` topic, the parser returns one typed
message or raises ``ProtocolError`` with a known code and a short, readable
message; it never raises anything else (which would end up as a traceback in
the MQTT loop and no answer to the viewer).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from peercam.protocol import (
    ALL_SESSIONS,
    MAX_PAYLOAD,
    SESSION_ID_RE,
    Bye,
    Candidate,
    Decline,
    ErrorCode,
    Hello,
    Offer,
    Open,
    ProtocolError,
    Reply,
    parse_viewer_message,
)

TYPES = ["hello", "offer", "candidate", "bye", "decline", "reply", "open"]
DEVICE_ONLY = ["welcome", "answer", "error", "status", "call", "call-ended", "opened", "calls"]
MESSAGE_LIMIT = 400  # characters of an error message a viewer may receive

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
session_ids = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_-]{8,64}\Z"),
    st.just(ALL_SESSIONS),
    st.text(max_size=70),
    json_values,
)
candidate_objects = st.one_of(
    st.none(),
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "candidate": st.one_of(
                st.text(max_size=200),
                st.just("candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"),
                json_values,
            ),
            "sdpMid": st.one_of(st.none(), st.text(max_size=8), json_values),
            "sdpMLineIndex": st.one_of(st.none(), st.integers(-5, 2**40), json_values),
        },
    ),
)
sdps = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda tail: "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + tail, st.text(max_size=200)
    ),
    json_values,
)


@st.composite
def protocol_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Messages shaped like the protocol's, with any field wrong, missing or extra."""
    message: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        message["v"] = draw(st.one_of(st.just(1), st.just(1.0), st.just(True), json_values))
    if draw(st.integers(0, 9)):
        message["type"] = draw(st.one_of(st.sampled_from(TYPES + DEVICE_ONLY), json_values))
    fields = {
        "session": session_ids,
        "sdp": sdps,
        "candidate": candidate_objects,
        "call": st.one_of(st.from_regex(r"\A[A-Za-z0-9_-]{8,64}\Z"), json_values),
        "reply": st.one_of(st.sampled_from(["coming", "at-door"]), json_values),
        "reason": json_values,
    }
    for name, strategy in fields.items():
        if draw(st.booleans()):
            message[name] = draw(strategy)
    for key, value in draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)).items():
        message.setdefault(key, value)
    return message


def check(payload: bytes) -> object:
    """Parse; assert the outcome is a typed message or a well-formed ProtocolError."""
    try:
        message = parse_viewer_message(payload)
    except ProtocolError as exc:
        assert exc.code in set(ErrorCode), exc.code
        assert isinstance(exc.message, str) and 5 <= len(exc.message) <= MESSAGE_LIMIT, exc.message
        assert (
            exc.session is None or exc.session == ALL_SESSIONS or (SESSION_ID_RE.match(exc.session))
        ), exc.session
        return exc
    assert isinstance(message, Hello | Offer | Candidate | Bye | Decline | Reply | Open)
    session = getattr(message, "session", None)
    if session is not None:
        assert session == ALL_SESSIONS or SESSION_ID_RE.match(session)
        assert session != ALL_SESSIONS or isinstance(message, Bye)
    return message


@FUZZ
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\xff\xfe\xfd")
@example(b"[" * 100_000)
@example(b'{"v":' + b"1" * 5000 + b"}")
@example(b"1" * 5000)
@example(b'{"v":1,"type":"hello","session":"abcdefgh","n":' + b"9" * 4400 + b"}")
@example(b'{"v":1,"type":"hello","session":"abcdefgh\\ud800"}')
@example(b'{"v":NaN,"type":"hello"}')
@example(b'{"v":1,"type":"hello","session":"abcdefgh","session":"ijklmnop"}')
def test_any_bytes_give_a_message_or_a_protocol_error(payload: bytes) -> None:
    check(payload)


@FUZZ
@given(protocol_messages())
@example({"v": "x" * 60_000, "type": "hello"})
@example({"v": 1, "type": "t" * 60_000})
@example({"v": [[1] * 10_000], "type": "hello"})
def test_protocol_shaped_messages_give_a_message_or_a_protocol_error(
    message: dict[str, Any],
) -> None:
    try:
        payload = json.dumps(message).encode()
    except ValueError:  # e.g. a surrogate json refuses to encode: not a payload anyone can send
        return
    outcome = check(payload)
    if isinstance(outcome, Hello | Offer | Candidate | Bye):
        assert message.get("v") == 1 and message.get("v") is not True
        assert message.get("type") == type(outcome).__name__.lower()


@pytest.mark.parametrize("digits", [4300, 4301, 20_000])
def test_huge_json_numbers_are_a_bad_request_not_a_crash(digits: int) -> None:
    """CPython refuses int literals over 4300 digits with a ValueError, not JSONDecodeError."""
    payload = b'{"v":1,"type":"hello","session":"abcdefgh","n":' + b"7" * digits + b"}"
    outcome = check(payload)
    if digits > 4300:
        assert isinstance(outcome, ProtocolError) and outcome.code is ErrorCode.BAD_REQUEST


def test_oversized_payload_is_refused_before_parsing() -> None:
    outcome = check(b" " * (MAX_PAYLOAD + 1))
    assert isinstance(outcome, ProtocolError) and "limit" in outcome.message
