"""Process-level memory tuning for the node process.

Every frame allocates and frees a few image-sized buffers (a 640×480 xyz+rgb cloud is 4.9 MB). glibc serves
blocks that large with fresh mmap()s and trims freed heap tops, so each frame page-faults ~10 MB of new memory:
measured at 640×480 on 2 cores, building the cloud message took 6.8 ms instead of 0.7 ms, and the node's
overhead halved once freed blocks stayed in the heap (git log -p docs/benchmarks.md). The node's ``main`` calls this once.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit; blocks below it come from the reusable heap
TRIM_THRESHOLD = 256 * 1024 * 1024  # keep up to this much freed memory for the next frame


def keep_frame_buffers_mapped() -> bool:
    """Ask glibc to reuse freed frame-sized blocks instead of unmapping them. False where not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
