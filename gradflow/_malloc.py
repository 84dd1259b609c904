"""Keep glibc's heap from growing without bound under torch's CPU allocations.

glibc serves an allocation above its mmap threshold (128 KiB at start) with mmap, and on
freeing such a block raises the threshold to the block's size. After that the large,
short-lived tensors of a training step (MBs each, allocated and freed every step) come
from the heap instead, where the mix of sizes fragments it so that the heap only grows:
measured here, the batched GD of sims/p_sweep.py's paper preset (7 nets, n = 1000,
width 100, 3000 steps) grew by ~200 MB/s to 24 GB and was killed, while the same run
with the threshold held fixed stays at 0.4 GB. Whether it happens depends on allocation
order (it came and went with unrelated code changes), so the threshold is fixed once for
the process instead: exactly what the environment variable MALLOC_MMAP_THRESHOLD_ does.

Skipped when that variable is set (the user's choice wins), when GRADFLOW_KEEP_MALLOC is
set, and on systems without glibc.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)
THRESHOLD = 128 * 1024  # glibc's own initial value


def fix_mmap_threshold() -> bool:
    """Hold glibc's mmap threshold at 128 KiB; returns whether it was set."""
    if (not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ
            or os.environ.get("GRADFLOW_KEEP_MALLOC")):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):  # musl, or no libc.so.6: nothing to fix
        return False


MMAP_THRESHOLD_FIXED = fix_mmap_threshold()
