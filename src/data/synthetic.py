"""Photo-sized synthetic JPEGs for benchmarks and scale checks (smooth colour fields, hard-edged shapes, grain)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def synthetic_photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A ``size`` (W, H) RGB image, different for every seed; encodes to a JPEG of realistic size."""
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, h // 60), max(2, w // 60), 3), dtype=np.uint8)
    im = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(10):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(8, w // 3)), y0 + int(rng.integers(8, h // 3))]
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.rectangle if rng.integers(2) else draw.ellipse)(box, fill=color)
    grain = rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, np.float32) + grain, 0, 255).astype(np.uint8))


def _write(args: tuple[Path, int, tuple[int, int]]) -> None:
    folder, i, size = args
    path = folder / f"synth_{i:06d}.jpg"
    if not path.exists():
        tmp = path.with_suffix(".part")
        synthetic_photo(size, seed=i).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)


def write_jpegs(folder: str | os.PathLike, count: int, size: tuple[int, int] = (1000, 700), workers: int | None = None) -> Path:
    """``count`` synthetic JPEGs in ``folder`` (kept when already there), written by ``workers`` processes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder, i, size) for i in range(count)]
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        list(pool.map(_write, jobs, chunksize=16))
    return folder
