"""Decoding photos into uint8 RGB arrays, the one way every loader does it."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from src.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

# Every reader enforces the pixel limit itself (open_image), up to Pillow's own hard stop at twice it;
# Pillow's warning in between would only repeat that, without the file's name.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(DataError):
    """One image file cannot be decoded; loaders skip it and report its name."""


class PixelLimitError(ImageError):
    """An image has more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression-bomb guard)."""


def open_image(path: str | os.PathLike) -> Image.Image:
    """``Image.open`` under one pixel limit for every reader: ``PIL.Image.MAX_IMAGE_PIXELS`` (``None``: none).

    Pillow alone only warns between the limit and twice it, so a 100-megapixel photo would pass one
    reader and be refused by another. Raises :class:`ImageError` naming the file.
    """
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise PixelLimitError(f"{path}: skipped: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.width * im.height > limit:
        im.close()
        raise PixelLimitError(f"{path}: skipped: {im.width}x{im.height} px is over the limit of {limit} pixels")
    return im


GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def load_rgb(path: str | os.PathLike, keep_gray: bool = False) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 array: EXIF orientation applied, 16-bit scaled to 8-bit.

    ``keep_gray``: a grayscale file as ``(H, W, 1)`` (evaluation scores it on its gray values).
    """
    try:
        with open_image(path) as im:
            is_gray = im.mode in GRAY_MODES
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                # 16-bit gray: Pillow's convert("RGB") would clip at 255 instead of scaling.
                gray = np.asarray(im, dtype=np.float64) / 257.0
                arr = np.repeat(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            else:
                arr = np.array(im.convert("RGB"))  # a writable copy: torch warns on read-only arrays
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    return np.ascontiguousarray(arr[..., :1] if keep_gray and is_gray else arr)


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (recursive, by suffix), sorted for a deterministic order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root={root}: no such directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_many(paths: Iterable[Path], min_size: int = 1) -> tuple[list[np.ndarray], list[Path]]:
    """Decode ``paths`` once (in threads: Pillow releases the GIL); skip and warn about bad or tiny ones."""
    paths = list(paths)

    def load(p: Path) -> np.ndarray | str:
        try:
            arr = load_rgb(p)
        except ImageError as e:
            return str(e)
        if min(arr.shape[:2]) < min_size:
            return f"{p}: {arr.shape[1]}x{arr.shape[0]} px is smaller than {min_size} px, skipped"
        return arr

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(load, paths))
    images, kept = [], []
    for p, r in zip(paths, results, strict=True):
        if isinstance(r, str):
            log.warning("skipping %s", r)
        else:
            images.append(r)
            kept.append(p)
    return images, kept
