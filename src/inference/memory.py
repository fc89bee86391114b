"""Memory that stays flat over a folder of photos of many sizes (process-wide settings for upscale)."""

from __future__ import annotations

import os

from src.degrade import clear_cache
from src.glibc import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, glibc

_LIBC = glibc()


# Shape-keyed caches of the CPU convolutions (oneDNN's primitives, PyTorch's ideep descriptors; 1024
# entries each by default). Every photo size brings new edge-tile shapes, so at the defaults they grow
# ~0.6 MB a photo for hundreds of photos; 64 holds all of one photo's tile shapes (<= 4 shapes x ~10 layers).
CONV_CACHE_ENTRIES = 64


def bound_memory(mmap_mb: int = 1) -> None:
    """Process-wide settings that keep memory flat over a folder of photos of many sizes.

    Call before the first convolution (the caches read their capacity then); a capacity already in
    the environment is kept. glibc: by default it raises its mmap threshold to the size of each large
    block freed (up to 32 MB), so later image buffers and feature maps come from the heap, leave
    holes of every size in it and RSS grows with the number of files (1.77 GB for Urban100's 100
    images). Blocks of ``mmap_mb`` or more get their own mappings, returned to the OS when freed, as
    evaluation does (``callbacks.heap.eval_mmap_mb``); the extra page faults cost ~1 % of the CPU time
    (12 photos of 0.8 MP out: 13.2 vs 12.0 s of system time in ~125 s). No-op parts off glibc.
    """
    for var in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(var, str(CONV_CACHE_ENTRIES))
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, mmap_mb << 20)
        _LIBC.mallopt(M_TRIM_THRESHOLD, mmap_mb << 20)


def after_photo() -> None:
    """Between photos: drop the resize weights prepared for this photo's tile sizes (the next photo's
    edge tiles have others; rebuilding them costs milliseconds) and hand the heap's free pages back."""
    clear_cache()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
