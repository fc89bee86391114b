"""glibc's malloc controls (mallopt, malloc_trim), or None off glibc. No Lightning: upscale imports it too."""

from __future__ import annotations

import ctypes

# mallopt(3) parameter numbers (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - probe: musl and macOS have no glibc mallopt
        return libc
    except (OSError, AttributeError):
        return None
