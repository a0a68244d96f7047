"""Fake ``libcamera`` Python bindings: only what the fake picamera2 and peercam use.

``Transform`` behaves like the pybind11 class of libcamera's
``src/py/libcamera/py_transform.cpp``: ``Transform(rotation=0, hflip=False,
vflip=False, transpose=False)``, flips XOR-ed onto the rotation, a
``ValueError("Invalid rotation")`` for anything but multiples of 90.
"""

from __future__ import annotations

from . import controls

__all__ = ["ColorSpace", "Transform", "controls"]


class Transform:
    """A 2D plane transform: horizontal/vertical flip and transpose."""

    def __init__(
        self, rotation: int = 0, hflip: bool = False, vflip: bool = False, transpose: bool = False
    ) -> None:
        # transformFromRotation(): 0 = identity, 90 = Rot90 (transpose + hflip),
        # 180 = hflip + vflip, 270 = transpose + vflip.
        table = {
            0: (False, False, False),
            90: (True, False, True),
            180: (True, True, False),
            270: (False, True, True),
        }
        if rotation % 360 not in table:
            raise ValueError("Invalid rotation")
        h, v, t = table[rotation % 360]
        self.hflip = h ^ bool(hflip)
        self.vflip = v ^ bool(vflip)
        self.transpose = t ^ bool(transpose)

    def __str__(self) -> str:
        parts = [
            n
            for n, on in (
                ("hflip", self.hflip),
                ("vflip", self.vflip),
                ("transpose", self.transpose),
            )
            if on
        ]
        return f"<libcamera.Transform '{'/'.join(parts) or 'identity'}'>"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transform):
            return NotImplemented
        return (self.hflip, self.vflip, self.transpose) == (
            other.hflip,
            other.vflip,
            other.transpose,
        )

    def __hash__(self) -> int:
        return hash((self.hflip, self.vflip, self.transpose))


class ColorSpace:
    """Named colour spaces (only their names matter to the fake)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def Smpte170m() -> ColorSpace:
        return ColorSpace("Smpte170m")

    @staticmethod
    def Rec709() -> ColorSpace:
        return ColorSpace("Rec709")

    def __repr__(self) -> str:
        return f"<libcamera.ColorSpace '{self.name}'>"
