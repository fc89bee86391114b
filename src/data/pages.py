"""Memory of a memory-mapped store: the file pages a process touches, and when they are dropped.

A process's resident set counts every file page it touched through a mapping, so training from a
store by ``mmap`` would grow RSS up to the store's size. After each read (one cut of batches, or one
whole image), a store larger than ``RELEASE_BYTES`` drops its pages from this process: the page cache
keeps them and the next read maps them again, so RSS holds about one cut whatever the store's size.
"""

from __future__ import annotations

import mmap
import weakref
from typing import Any

import numpy as np

# A store (all splits together) this small keeps its pages mapped: its whole size is bound enough.
RELEASE_BYTES = 512 << 20
# A page fault maps the cached pages around the one touched too (Linux fault-around, 64 KB
# windows): a 48-row crop spanning 144 KB ends up mapping ~256 KB. Counted per crop.
FAULT_AROUND_BYTES = 128 << 10
# The most one cut (several batches in one BatchCropper call, see PatchBatches) may map, by the
# estimate above: what stays resident between two releases.
CUT_MAP_BYTES = RELEASE_BYTES // 4


class _Pages:
    """The open split mappings of this process (held weakly)."""

    live: weakref.WeakSet[Any] = weakref.WeakSet()  # owners of a ``mapping`` (``StoreImages``)


def track(owner: Any) -> None:
    """Count ``owner.mapping`` (an ``mmap``) among the mappings that ``release`` drops; held weakly."""
    _Pages.live.add(owner)


def release() -> None:
    """After a read through the mappings: drop their pages from this process if the store is over the budget.

    ``MADV_DONTNEED`` on a file mapping never loses data: the next access maps the page again
    from the page cache (or the file), so views already handed out stay valid.
    """
    maps = [m for m in (owner.mapping for owner in list(_Pages.live)) if m is not None]
    if sum(len(m) for m in maps) > RELEASE_BYTES:
        for m in maps:
            m.madvise(mmap.MADV_DONTNEED)


def mapped_per_crop(shapes: np.ndarray, patch_size: int) -> int:
    """Estimated bytes of mapping one crop touches (its rows' span plus fault-around), of images of ``shapes`` (H, W)."""
    return int(shapes[:, 1].mean()) * 3 * patch_size + FAULT_AROUND_BYTES if len(shapes) else 0
