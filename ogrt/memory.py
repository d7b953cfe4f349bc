"""Allocator settings for a long-running ingest process (glibc only; elsewhere a no-op).

Every record allocates and frees a few KB (orjson grows its output buffer by realloc, a
batch is joined into one buffer of ~1 MB). With glibc's defaults a freed block at the top
of a heap is given back to the kernel as soon as more than 128 KB are free there, and the
next allocation faults the same pages in again, zero-filled: measured at 50,000 UDP
records/s into jsonl, ~110,000 page faults/s and a fifth of the workers' CPU spent on
them (perf). Keeping up to TRIM_THRESHOLD free at the top of each heap, and serving blocks up to
MMAP_THRESHOLD from the heap instead of fresh mmap()s, brings that to ~1,000/s.
The cost: up to TRIM_THRESHOLD per heap (the main one and one per thread) stays resident
after a burst. Measured at 80,000-100,000 UDP records/s offered (overload): with 64 MiB the
daemon's peak RSS reached 216 MB (glibc's defaults: 149 MB); with 32 MiB 154-173 MB and
still ~4,000 page faults/s; 16 MiB brought the faults back (~145,000/s).
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
