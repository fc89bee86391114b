"""Deterministic train/val/test splits: the one rule from a hash to a split, and a photo folder's assignment."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from src.data.images import IMAGE_SUFFIXES, list_images
from src.errors import DataError

SPLITS = ("train", "val", "test")


def unit(digest: bytes) -> float:
    """The first 64 bits of a hash digest as a fraction in [0, 1): uniform, and the same on every machine."""
    return int.from_bytes(digest[:8], "big") / 2**64


def split_at(u: float, val_fraction: float, test_fraction: float) -> str:
    """The split of a file whose hash is ``u`` (see ``unit``): test below ``test_fraction``, then val, then train.

    The one threshold rule of a folder (``assign_splits``: a hash of the path) and of a store
    (``store.split_of``: a hash of the bytes), so the two cannot drift apart.
    """
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def _unit_hash(name: str) -> float:
    """A folder's hash: of the file's path relative to the root (sha1)."""
    return unit(hashlib.sha1(name.encode()).digest())


def folder_images(root: str) -> list[Path]:
    """The image files under ``root``; :class:`DataError` if there are none."""
    paths = list_images(root)
    if not paths:
        raise DataError(f"data.root={root}: holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def assign_splits(
    paths: list[Path], root: str, val_fraction: float, test_fraction: float, trainable: Callable[[Path], bool] | None = None
) -> dict[str, list[Path]]:
    """Assign each of ``paths`` to a split by a hash of its path relative to ``root``.

    A file keeps its split when others are added or removed, so val/test never leak into train
    as a collection grows. An empty val or test split takes the lowest-hash train image (a stable
    choice), as long as train keeps an image that ``trainable`` accepts (default: any).
    """
    u = {p: _unit_hash(p.relative_to(root).as_posix()) for p in paths}
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for p in sorted(paths, key=u.__getitem__):
        out[split_at(u[p], val_fraction, test_fraction)].append(p)
    trainable = trainable or (lambda p: True)
    for s in ("test", "val"):
        if out[s]:
            continue
        n_trainable = sum(map(trainable, out["train"]))
        for i, p in enumerate(out["train"]):
            if n_trainable - trainable(p) >= 1:
                out[s].append(out["train"].pop(i))
                break
    return {s: sorted(v) for s, v in out.items()}


def split_folder(root: str, val_fraction: float, test_fraction: float) -> dict[str, list[Path]]:
    """Every image file under ``root`` assigned to a split (see ``assign_splits``), before any is decoded.

    Small folders still get one val and one test image (when there are 3+).
    """
    return assign_splits(folder_images(root), root, val_fraction, test_fraction)
