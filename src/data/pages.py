"""Memory of a memory-mapped store: the file pages a process touches, and when they are dropped.

A process's resident set counts every file page it touched through a mapping, so training from a
store by ``mmap`` would grow RSS up to the store's size. Reads through the mappings are counted
here (an estimate per access, checked against ``/proc`` now and then) and, past ``RELEASE_BYTES``,
every mapping's pages are dropped from the process: the page cache keeps them, and RSS stays
bounded whatever the store's size.
"""

from __future__ import annotations

import mmap
import weakref
from typing import Any

import numpy as np

# Past this many bytes handed out (all splits together), the mappings' pages are dropped from the
# process; a store smaller than this is never dropped.
RELEASE_BYTES = 512 << 20
# A page fault maps the cached pages around the one touched too (Linux fault-around, 64 KB
# windows): a 48-row crop spanning 144 KB ends up mapping ~256 KB. Counted per access.
FAULT_AROUND_BYTES = 128 << 10
# The estimate only paces the checks: every this many estimated bytes, the process's resident file
# pages are read from /proc and the mappings dropped if they are over RELEASE_BYTES. The estimate
# alone is not enough: large page-cache folios (a freshly written store) map several times more.
CHECK_BYTES = 32 << 20
# The most one cut (several batches in one BatchCropper call, see PatchBatches) may map, by the
# estimate: a call maps all its pages before it can account for them.
CUT_MAP_BYTES = RELEASE_BYTES // 4


class _Pages:
    """Bytes read through every open split mapping of this process since their pages were last dropped."""

    handed_out = 0
    live: weakref.WeakSet[Any] = weakref.WeakSet()  # owners of a ``mapping`` (``StoreImages``)


def resident_file_bytes() -> int | None:
    """This process's resident file-backed memory (mapped store pages, libraries), or None without /proc."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


def track(owner: Any) -> None:
    """Count ``owner.mapping`` (an ``mmap``) among the mappings that ``account`` drops; held weakly."""
    _Pages.live.add(owner)


def account(nbytes: int) -> None:
    """Note ``nbytes`` read through a mapping; drop all mappings' pages from this process when enough piled up.

    ``MADV_DONTNEED`` on a file mapping never loses data: the next access maps the page again
    from the page cache (or the file), so views already handed out stay valid.
    """
    _Pages.handed_out += nbytes
    if _Pages.handed_out < min(CHECK_BYTES, RELEASE_BYTES):
        return
    resident = resident_file_bytes()
    if resident is None and _Pages.handed_out <= RELEASE_BYTES:
        return  # no /proc (not Linux): go by the estimate
    _Pages.handed_out = 0
    if resident is not None and resident <= RELEASE_BYTES:
        return
    maps = [m for m in (owner.mapping for owner in list(_Pages.live)) if m is not None]
    if sum(len(m) for m in maps) > RELEASE_BYTES:  # a store smaller than the budget is never dropped
        for m in maps:
            m.madvise(mmap.MADV_DONTNEED)


def mapped_per_crop(shapes: np.ndarray, patch_size: int) -> int:
    """Estimated bytes of mapping one crop touches (its rows' span plus fault-around), of images of ``shapes`` (H, W)."""
    return int(shapes[:, 1].mean()) * 3 * patch_size + FAULT_AROUND_BYTES if len(shapes) else 0
