"""A capture-time barcode in the picture, for glass-to-glass latency measurement.

The sender stamps the capture time into the luma plane; a viewer that
decodes the picture reads it back and compares with its own clock.  The code
has to survive lossy H.264 at 1-2 Mbit/s, so it is made of large, flat
black/white cells (one bit each, about 1/64 of the picture width: 20x20 px at
1280x720, 10x10 px at 640x480, 5x5 px at 320x240) in a black band at the
bottom of the picture.  Cells are read at their centres, away from the edges
where the codec's ringing lives.

Layout, left to right: 4 start-guard cells, 48 data bits (microseconds modulo
2**48, most significant first: that wraps after about 8.9 years), 8 bits of
CRC-8 over the data, 4 end-guard cells.  Guards and CRC make a missing,
misaligned or damaged code read as ``None`` instead of a wrong time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATA_BITS = 48
MODULUS = 1 << DATA_BITS
_START_GUARD = (1, 0, 1, 1)
_END_GUARD = (1, 1, 0, 1)
_CRC_BITS = 8
CELLS = len(_START_GUARD) + DATA_BITS + _CRC_BITS + len(_END_GUARD)  # 64

#: Limited-range luma (what H.264 viewers expect for black and white).
BLACK = 16
WHITE = 235
_THRESHOLD = (BLACK + WHITE) / 2

#: Smallest cell that still reads back after compression; below this the
#: picture is too small to carry a code (`fits` says False).
MIN_CELL = 4


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the code lives in a picture of a given size (a pure function of the size)."""

    cell: int  # cell width and height, px
    x0: int  # left edge of the first cell
    y0: int  # top row of the cells
    band_top: int  # first row of the black band (quiet zone included)

    @property
    def x1(self) -> int:
        return self.x0 + CELLS * self.cell

    @property
    def y1(self) -> int:
        return self.y0 + self.cell


def fits(width: int, height: int) -> bool:
    """True if a picture of this size is big enough for a readable code."""
    cell = width // CELLS
    return cell >= MIN_CELL and height >= 4 * cell


def layout(width: int, height: int) -> Layout:
    """The code's position: centred horizontally, at the bottom, with a quiet zone."""
    if not fits(width, height):
        raise ValueError(f"a {width}x{height} picture is too small for the timecode")
    cell = width // CELLS
    quiet = max(2, cell // 4)
    x0 = (width - CELLS * cell) // 2
    y0 = height - quiet - cell
    return Layout(cell=cell, x0=x0, y0=y0, band_top=y0 - quiet)


def band_height(width: int, height: int) -> int:
    """Rows at the bottom of the picture the code overwrites (0 if it does not fit)."""
    return height - layout(width, height).band_top if fits(width, height) else 0


def _crc8(value: int) -> int:
    """CRC-8 (polynomial 0x07) over the 6 data bytes; cheap enough per frame."""
    crc = 0
    for byte in value.to_bytes(DATA_BITS // 8, "big"):
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _bits(t_us: int) -> np.ndarray:
    """The 64 cell values (0/1) for a time."""
    value = t_us % MODULUS
    payload = value.to_bytes(DATA_BITS // 8, "big") + bytes([_crc8(value)])
    data = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    return np.concatenate((np.array(_START_GUARD, np.uint8), data, np.array(_END_GUARD, np.uint8)))


def stamp(y_plane: np.ndarray, t_us: int) -> None:
    """Draw ``t_us`` (modulo 2**48) as a barcode into the bottom band of a luma plane.

    Overwrites the whole width of the band (black quiet zone plus cells) so
    that whatever was drawn there before cannot confuse the reader.
    """
    height, width = y_plane.shape
    lay = layout(width, height)
    y_plane[lay.band_top :, :] = BLACK
    levels = np.where(_bits(t_us), WHITE, BLACK).astype(y_plane.dtype)
    y_plane[lay.y0 : lay.y1, lay.x0 : lay.x1] = np.repeat(levels, lay.cell)


def _cell_means(y_plane: np.ndarray, lay: Layout) -> np.ndarray:
    """Mean luma of the central half of every cell."""
    lo, hi = lay.cell // 4, lay.cell - lay.cell // 4
    region = y_plane[lay.y0 + lo : lay.y0 + hi, lay.x0 : lay.x1]
    cells = region.reshape(region.shape[0], CELLS, lay.cell)[:, :, lo:hi]
    return cells.mean(axis=(0, 2))


def read(y_plane: np.ndarray) -> int | None:
    """The time (microseconds modulo 2**48) stamped in a luma plane, or None.

    None means: picture too small, guards not found, or CRC mismatch.
    """
    height, width = y_plane.shape
    if not fits(width, height):
        return None
    bits = (_cell_means(y_plane, layout(width, height)) > _THRESHOLD).astype(np.uint8)
    n_start, n_end = len(_START_GUARD), len(_END_GUARD)
    if tuple(bits[:n_start]) != _START_GUARD or tuple(bits[-n_end:]) != _END_GUARD:
        return None
    payload = np.packbits(bits[n_start:-n_end]).tobytes()
    value = int.from_bytes(payload[: DATA_BITS // 8], "big")
    if payload[-1] != _crc8(value):
        return None
    return value


def unwrap(value: int, reference_us: int) -> int:
    """The full microsecond time nearest ``reference_us`` whose residue is ``value``.

    ``read`` returns the time modulo 2**48; pass the reader's own clock to get
    an absolute time back (exact as long as both clocks are within ~4 years).
    """
    base = reference_us - reference_us % MODULUS + value
    candidates = (base - MODULUS, base, base + MODULUS)
    return min(candidates, key=lambda t: abs(t - reference_us))
