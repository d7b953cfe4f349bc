"""Allocator settings for a long-running ingest process (glibc only; elsewhere a no-op).

Every record allocates and frees a few KB, and with glibc's defaults the top of a heap is
given back to the kernel as soon as 128 KB there are free, then faulted in again by the
next batch. Keeping up to TRIM_THRESHOLD free at the top of each heap (the main one and
one per thread), and serving blocks up to MMAP_THRESHOLD from the heap instead of fresh
mmap()s, avoids that; the price is up to TRIM_THRESHOLD per heap staying resident after a
burst. The measurements behind both values are in README.md, "Memory".
"""
from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["tune_allocator", "TRIM_THRESHOLD", "MMAP_THRESHOLD"]

log = logging.getLogger("ogrt.memory")

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 32 << 20
MMAP_THRESHOLD = 4 << 20


def tune_allocator() -> bool:
    """Apply the settings above; True when glibc took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not ok:
        log.debug("mallopt refused the allocator settings; keeping the defaults")
    return ok
