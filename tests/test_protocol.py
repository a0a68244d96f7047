"""Validation at the edge: every malformed viewer message becomes a precise ProtocolError."""

from __future__ import annotations

import json

import pytest

from peercam.protocol import (
    MAX_PAYLOAD,
    Bye,
    Candidate,
    Decline,
    ErrorCode,
    Hello,
    Offer,
    ProtocolError,
    Topics,
    encode,
    error_message,
    parse_viewer_message,
)

SID = "abcdefgh1234"
SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


def parse(obj: object) -> object:
    return parse_viewer_message(json.dumps(obj).encode())


def refused(payload: bytes | object) -> ProtocolError:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(ProtocolError) as info:
        parse_viewer_message(raw)
    return info.value


def test_good_messages_become_typed() -> None:
    assert parse({"v": 1, "type": "hello", "session": SID}) == Hello(SID)
    assert parse({"v": 1, "type": "offer", "session": SID, "sdp": SDP, "extra": 1}) == Offer(
        SID, SDP
    )
    assert parse({"v": 1, "type": "offer", "session": SID, "sdp": SDP, "call": "call-1234"}) == (
        Offer(SID, SDP, "call-1234")
    )
    cand = parse(
        {
            "v": 1,
            "type": "candidate",
            "session": SID,
            "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"},
        }
    )
    assert isinstance(cand, Candidate) and cand.candidate and cand.candidate.sdp_mid == "0"
    assert parse({"v": 1, "type": "candidate", "session": SID, "candidate": None}) == Candidate(
        SID, None
    )
    assert parse({"v": 1, "type": "bye", "session": "*"}) == Bye("*")
    assert parse({"v": 1, "type": "decline", "call": "call-1234"}) == Decline("call-1234")


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        (
            b"{nope",
            ErrorCode.BAD_REQUEST,
            "not JSON: Expecting property name enclosed in double quotes at character 1",
        ),
        (b"\xff\xfe", ErrorCode.BAD_REQUEST, "UTF-8"),
        ([1, 2], ErrorCode.BAD_REQUEST, "object"),
        ({"type": "hello", "session": SID}, ErrorCode.BAD_REQUEST, "'v'"),
        ({"v": 2, "type": "hello", "session": SID}, ErrorCode.UNSUPPORTED, "version"),
        ({"v": True, "type": "hello", "session": SID}, ErrorCode.UNSUPPORTED, "version"),
        ({"v": 1, "session": SID}, ErrorCode.BAD_REQUEST, "'type'"),
        ({"v": 1, "type": 5}, ErrorCode.BAD_REQUEST, "'type'"),
        ({"v": 1, "type": "dance"}, ErrorCode.UNSUPPORTED, "unknown"),
        ({"v": 1, "type": "welcome", "session": SID}, ErrorCode.UNSUPPORTED, "devices"),
        ({"v": 1, "type": "hello", "session": 12}, ErrorCode.BAD_REQUEST, "string"),
        ({"v": 1, "type": "hello", "session": "x"}, ErrorCode.BAD_REQUEST, "session"),
        ({"v": 1, "type": "hello", "session": "*"}, ErrorCode.BAD_REQUEST, "session"),
        ({"v": 1, "type": "offer", "session": SID}, ErrorCode.BAD_REQUEST, "'sdp'"),
        ({"v": 1, "type": "offer", "session": SID, "sdp": "hello"}, ErrorCode.BAD_REQUEST, "sdp"),
        ({"v": 1, "type": "candidate", "session": SID}, ErrorCode.BAD_REQUEST, "candidate"),
        (
            {"v": 1, "type": "candidate", "session": SID, "candidate": {"candidate": "x"}},
            ErrorCode.BAD_REQUEST,
            "sdpMid",
        ),
        (
            {
                "v": 1,
                "type": "candidate",
                "session": SID,
                "candidate": {"candidate": "x", "sdpMLineIndex": True},
            },
            ErrorCode.BAD_REQUEST,
            "sdpMLineIndex",
        ),
        ({"v": 1, "type": "decline", "call": "no"}, ErrorCode.BAD_REQUEST, "call"),
    ],
)
def test_bad_messages_get_precise_errors(payload: object, code: ErrorCode, words: str) -> None:
    error = refused(payload)
    assert error.code is code
    assert words.lower() in error.message.lower()


def test_error_keeps_the_session_when_it_was_readable() -> None:
    assert refused({"v": 2, "type": "hello", "session": SID}).session == SID
    assert refused({"v": 1, "type": "offer", "session": SID}).session == SID
    assert refused({"v": 1, "type": "hello", "session": "x"}).session is None


def test_oversize_payload_is_refused_before_parsing() -> None:
    big = json.dumps({"v": 1, "type": "hello", "session": SID, "pad": "x" * MAX_PAYLOAD}).encode()
    error = refused(big)
    assert error.code is ErrorCode.BAD_REQUEST and "limit" in error.message


def test_ids_with_a_trailing_newline_are_refused() -> None:
    error = refused(b'{"v":1,"type":"hello","session":"abcdefgh\\n"}')
    assert error.code is ErrorCode.BAD_REQUEST and "session" in error.message
    error = refused(b'{"v":1,"type":"decline","call":"abcdefgh\\n"}')
    assert error.code is ErrorCode.BAD_REQUEST and "call" in error.message


def test_deep_nesting_is_a_bad_request_not_a_crash() -> None:
    error = refused(b"[" * 100_000 + b"]" * 100_000)
    assert error.code is ErrorCode.BAD_REQUEST


def test_topics_take_the_viewer_from_the_topic_only() -> None:
    topics = Topics("peercam", "frontdoor")
    assert topics.viewer_from_inbox("peercam/frontdoor/in/alice") == "alice"
    assert topics.viewer_from_inbox("peercam/frontdoor/in/Alice") is None
    assert topics.viewer_from_inbox("peercam/frontdoor/in/a/b") is None
    assert topics.viewer_from_inbox("peercam/frontdoor/in/alice\n") is None  # re's $ allows it
    assert topics.viewer_from_inbox("peercam/backdoor/in/alice") is None
    assert topics.outbox("alice") == "peercam/frontdoor/out/alice"


def test_encoded_messages_carry_the_version() -> None:
    msg = json.loads(encode(error_message(ErrorCode.BUSY, "full", SID)))
    assert msg == {"v": 1, "type": "error", "code": "busy", "message": "full", "session": SID}
