"""16-bit RGB(A) PNG, which Pillow reads as 8 bits (it keeps each sample's high byte) and cannot write.

Reading decodes the file twice with Pillow's own PNG decoder (filters, interlacing, chunks all
handled there): once keeping the high byte of each sample, once the low byte. Writing is plain PNG:
rows with the Sub filter, deflated in bands so memory stays near the size of the image.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# Pillow's raw modes for 16-bit big-endian RGB(A) samples, and the ones that take the other byte.
_LOW_BYTE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG color type (gray, gray+alpha, RGB, RGBA)
_BAND_BYTES = 32 << 20


def is_png16_color(im: Image.Image) -> bool:
    """Whether ``im`` (opened, not yet loaded) is a 16-bit RGB or RGBA PNG."""
    return im.format == "PNG" and len(im.tile) == 1 and im.tile[0].args in _LOW_BYTE


def read_png16_color(path: str | Path) -> np.ndarray:
    """A 16-bit RGB(A) PNG as an ``(H, W, 3|4)`` uint16 array, every bit kept."""
    with Image.open(path) as im:
        high = np.asarray(im, dtype=np.uint16)
    with Image.open(path) as im:
        tile = im.tile[0]
        im.tile = [tile._replace(args=_LOW_BYTE[tile.args])]
        low = np.asarray(im, dtype=np.uint16)
    return (high << 8) | low


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png16(path: str | Path, arr: np.ndarray) -> None:
    """Write an ``(H, W, C)`` uint16 array (C = 1 to 4: gray, gray+alpha, RGB, RGBA) as a 16-bit PNG."""
    h, w, c = arr.shape
    rows = arr.astype(">u2").reshape(h, w * c).view(np.uint8)  # big-endian samples, one row of bytes each
    bpp = 2 * c
    deflate = zlib.compressobj(6)
    band = max(1, _BAND_BYTES // max(1, rows.shape[1]))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, _COLOR_TYPE[c], 0, 0, 0)))
        for y in range(0, h, band):
            raw = rows[y : y + band]
            sub = raw.copy()
            sub[:, bpp:] -= raw[:, :-bpp]  # Sub filter: each byte minus the same byte of the pixel to its left (mod 256)
            data = np.concatenate([np.ones((len(raw), 1), np.uint8), sub], axis=1)
            if out := deflate.compress(data.tobytes()):
                f.write(_chunk(b"IDAT", out))
        f.write(_chunk(b"IDAT", deflate.flush()) + _chunk(b"IEND", b""))
