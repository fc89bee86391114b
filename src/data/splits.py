"""Deterministic train/val/test splits of a photo folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

from src.data.images import IMAGE_SUFFIXES, list_images
from src.errors import DataError

SPLITS = ("train", "val", "test")


def _unit_hash(name: str) -> float:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") / 2**64


def split_folder(root: str, val_fraction: float, test_fraction: float) -> dict[str, list[Path]]:
    """Assign each image under ``root`` to a split by a hash of its relative path.

    A file keeps its split when others are added or removed, so val/test never leak into train
    as a collection grows. Small folders still get one val and one test image (when there are 3+).
    """
    paths = list_images(root)
    if not paths:
        raise DataError(f"data.root={root}: holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    u = {p: _unit_hash(p.relative_to(root).as_posix()) for p in paths}
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for p in sorted(paths, key=u.__getitem__):
        out["test" if u[p] < test_fraction else "val" if u[p] < test_fraction + val_fraction else "train"].append(p)
    for s in ("test", "val"):
        if not out[s] and len(out["train"]) >= 2:
            out[s].append(out["train"].pop(0))  # lowest hash: stable choice
    return {s: sorted(v) for s, v in out.items()}
