"""Draw dashboard/icon-192.png and icon-512.png (the shapes of dashboard/icon.svg).

    .venv/bin/python scripts/make_icons.py

PyAV and NumPy only (both are peercam dependencies): no image library needed.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
BG, BLUE, LIGHT = (0x10, 0x14, 0x18), (0x2D, 0x7F, 0xF9), (0xE8, 0xEE, 0xF5)


def draw(size: int) -> np.ndarray:
    s = size / 512
    y, x = np.mgrid[0:size, 0:size] + 0.5
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = BG  # full bleed: "maskable" icons are cut to a circle or squircle by the OS

    def disc(cx: float, cy: float, r: float, color: tuple[int, int, int]) -> None:
        img[(x - cx * s) ** 2 + (y - cy * s) ** 2 <= (r * s) ** 2] = color

    disc(256, 200, 120, BLUE)
    disc(256, 200, 64, BG)
    disc(256, 200, 28, LIGHT)
    disc(256, 400, 44, LIGHT)
    return img


def write_png(path: Path, img: np.ndarray) -> None:
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height = img.shape[1], img.shape[0]
    codec.pix_fmt = "rgb24"
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    packets = [*codec.encode(frame), *codec.encode(None)]
    path.write_bytes(bytes(packets[0]))


if __name__ == "__main__":
    for size in (192, 512):
        write_png(DASHBOARD / f"icon-{size}.png", draw(size))
        print(f"wrote {DASHBOARD / f'icon-{size}.png'}")
