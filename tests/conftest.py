"""Shared test helpers: tiny generated photos and the real training command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.commands import run_module

ROOT = Path(__file__).resolve().parents[1]

# `make test` runs one pytest-xdist worker per core: each worker, and every run it starts, gets one
# thread, since workers with a thread per core each oversubscribe the cores and OpenMP then spins.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def synthetic_photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A photo-like test image: smooth gradient plus sharp-edged shapes and lines (what SR must restore)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    ramps = [rng.uniform(40, 200) + rng.uniform(-60, 60) * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) for _ in range(3)]
    base = np.stack(ramps, -1)
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(4, w // 2), y0 + rng.integers(4, h // 2)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=color)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        else:
            draw.line([x0, y0, x1, y1], fill=color, width=int(rng.integers(1, 4)))
    return im


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder of 12 generated 96x96 PNG photos."""
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(12):
        synthetic_photo((96, 96), seed=i).save(d / f"img{i:02d}.png")
    return d


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of 8 generated 64x64 PNG photos, shared by a module's tests."""
    d = tmp_path_factory.mktemp("photos")
    for i in range(8):
        synthetic_photo((64, 64), seed=i).save(d / f"p{i}.png")
    return d


def run_train(run_dir: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m src.train`` as a user runs it, writing into ``run_dir``."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return run_module("src.train", f"hydra.run.dir={run_dir}", *overrides, env=env, timeout=timeout)


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())
