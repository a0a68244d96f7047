"""Small, pure helpers on Annex-B H.264 byte streams.

Sources must not trust an encoder's "keyframe" flag blindly: the hub starts
new viewers on what a source calls a keyframe, and a viewer can only start
decoding on an IDR access unit that carries SPS and PPS in front.  These
helpers look at the NAL units themselves so that a source can say what its
bytes really are.
"""

from __future__ import annotations

from collections.abc import Iterator

#: NAL unit types used by peercam (ITU-T H.264 table 7-1).
NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

#: profile_idc of the Baseline profile; "constrained baseline" is this with
#: constraint_set1_flag set (the stream then also conforms to Main).
PROFILE_BASELINE = 66
CONSTRAINT_SET0 = 0x80
CONSTRAINT_SET1 = 0x40

_START_CODE = b"\x00\x00\x01"


def iter_nal_units(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(nal_unit_type, nal_unit)`` for every NAL unit in an Annex-B buffer.

    ``nal_unit`` starts with the NAL header byte (start code removed) and is a
    zero-copy ``memoryview`` into ``data``.  Both 3-byte (``00 00 01``) and
    4-byte (``00 00 00 01``) start codes are accepted: the extra zero of a
    4-byte start code, like any ``trailing_zero_8bits``, is stripped from the
    end of the previous unit (a NAL unit never ends in a zero byte, its last
    byte holds the RBSP stop bit).  Bytes before the first start code are
    ignored, as are empty units.
    """
    buf = bytes(data) if not isinstance(data, bytes) else data
    view = memoryview(buf)
    start = buf.find(_START_CODE)
    while start != -1:
        begin = start + len(_START_CODE)
        nxt = buf.find(_START_CODE, begin)
        end = len(buf) if nxt == -1 else nxt
        while end > begin and buf[end - 1] == 0:
            end -= 1
        if end > begin:
            yield buf[begin] & 0x1F, view[begin:end]
        start = nxt


def nal_types(data: bytes | bytearray | memoryview) -> list[int]:
    """The NAL unit types of an access unit, in order (handy in logs and tests)."""
    return [nal_type for nal_type, _ in iter_nal_units(data)]


def is_idr(data: bytes | bytearray | memoryview) -> bool:
    """True if the buffer holds a slice of an IDR picture (NAL type 5)."""
    return any(nal_type == NAL_IDR for nal_type, _ in iter_nal_units(data))


def has_parameter_sets(data: bytes | bytearray | memoryview) -> bool:
    """True if the buffer carries both an SPS (7) and a PPS (8)."""
    seen = {nal_type for nal_type, _ in iter_nal_units(data)}
    return NAL_SPS in seen and NAL_PPS in seen


def _unescape(nal: memoryview | bytes, limit: int) -> bytes:
    """The first ``limit`` RBSP bytes of a NAL unit (emulation prevention removed)."""
    out = bytearray()
    zeros = 0
    for byte in bytes(nal[: limit * 2 + 2]):
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
        if len(out) >= limit:
            break
    return bytes(out)


def sps_profile(data: bytes | bytearray | memoryview) -> tuple[int, int, int] | None:
    """``(profile_idc, constraint_flags, level_idc)`` from the first SPS, or None.

    ``constraint_flags`` is the whole byte (constraint_set0_flag is 0x80,
    constraint_set1_flag 0x40, ...), exactly as it appears in an SDP
    ``profile-level-id``.
    """
    for nal_type, nal in iter_nal_units(data):
        if nal_type == NAL_SPS:
            rbsp = _unescape(nal, 4)
            if len(rbsp) < 4:
                return None
            return rbsp[1], rbsp[2], rbsp[3]
    return None


def profile_level_id(data: bytes | bytearray | memoryview) -> str | None:
    """The SDP ``profile-level-id`` (6 hex digits, e.g. ``"42e01f"``) of the first SPS.

    libx264 with ``profile=baseline`` really emits ``42c01f`` at level 3.1:
    it sets constraint_set0 *and* constraint_set1 (0xc0) but never
    constraint_set2 (checked with libx264 via PyAV 18).  Our SDP offers
    ``42e01f``; browsers decode such ``42c0xx`` streams under it because
    both are constrained baseline (profile_idc 66 with constraint_set1).
    """
    profile = sps_profile(data)
    if profile is None:
        return None
    return "{:02x}{:02x}{:02x}".format(*profile)


def is_constrained_baseline(data: bytes | bytearray | memoryview) -> bool:
    """True if the first SPS is Baseline with constraint_set1 (= constrained baseline)."""
    profile = sps_profile(data)
    return (
        profile is not None
        and profile[0] == PROFILE_BASELINE
        and bool(profile[1] & CONSTRAINT_SET1)
    )
