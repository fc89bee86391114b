"""The shared battery of awkward image files (issue 7): every loader is run over the same folder.

``write_battery(dir)`` returns name -> kind: "good" files must be used, "bad" ones skipped and named,
"small" ones (valid but tiny) are used or skipped depending on the tool's size limit, "animated" ones
are used by the data tools (first frame) and refused by name by ``upscale`` (it would drop the
animation); none may crash a tool.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import synthetic_photo


def _png_header_only(width: int, height: int) -> bytes:
    # A valid PNG signature and IHDR claiming width x height, then an empty image: a decompression bomb's header.
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 12


def png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit RGB (H, W, 3) or RGBA (H, W, 4) PNG, written by hand: Pillow cannot write one."""
    h, w, c = arr.shape
    rows = arr.astype(">u2").reshape(h, w * c)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_bit_depth(path: Path) -> tuple[int, int]:
    """(bit depth, color type) from a PNG's IHDR, read without a decoder."""
    head = path.read_bytes()[:26]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return head[24], head[25]


def write_battery(d: Path, size: tuple[int, int] = (120, 100)) -> dict[str, str]:
    d.mkdir(parents=True, exist_ok=True)
    photo = synthetic_photo(size, seed=7)
    kinds: dict[str, str] = {}

    (d / "zero_bytes.jpg").write_bytes(b"")
    photo.save(d / "full.jpg", quality=90)
    (d / "truncated.jpg").write_bytes((d / "full.jpg").read_bytes()[:600])
    (d / "full.jpg").unlink()
    (d / "text_named.jpg").write_text("this is a text file, not a JPEG\n")
    photo.save(d / "crc.png")
    raw = bytearray((d / "crc.png").read_bytes())
    raw[40] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
    (d / "bad_crc.png").write_bytes(bytes(raw))
    (d / "crc.png").unlink()
    (d / "bomb_header.png").write_bytes(_png_header_only(50_000, 50_000))
    kinds |= dict.fromkeys(["zero_bytes.jpg", "truncated.jpg", "text_named.jpg", "bad_crc.png", "bomb_header.png"], "bad")

    Image.new("RGB", (1, 1), "red").save(d / "one_pixel.png")
    synthetic_photo((30, 30), seed=8).save(d / "smaller_than_patch.png")
    kinds |= dict.fromkeys(["one_pixel.png", "smaller_than_patch.png"], "small")

    pal = photo.convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    pal.save(d / "palette_transparent.png", transparency=0)
    Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257).save(d / "gray16.png")
    photo.convert("CMYK").save(d / "cmyk.jpg")
    exif = photo.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    photo.save(d / "exif_rotated.jpg", exif=exif)
    Image.new("RGB", (2400, 1800), (90, 140, 200)).save(d / "huge_valid.png")  # 4.3 MP: big, legal
    low_bytes = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint16)
    high_bytes = np.asarray(synthetic_photo(size, seed=9), dtype=np.uint16)  # another photo: not a duplicate to prepare
    png16(d / "rgb16.png", high_bytes * 256 + low_bytes)  # real 16-bit levels
    good = ["palette_transparent.png", "gray16.png", "cmyk.jpg", "exif_rotated.jpg", "huge_valid.png", "rgb16.png"]
    kinds |= dict.fromkeys(good, "good")

    photo.save(d / "animated.png", save_all=True, append_images=[photo.transpose(Image.Transpose.ROTATE_180)], duration=100)
    kinds["animated.png"] = "animated"
    return kinds
