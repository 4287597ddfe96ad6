"""Process-wide memory settings for interactive use (no torch, no Qt)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_heap_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Make glibc's malloc keep freed memory for reuse (a process-wide setting).

    A click allocates and frees a few dozen 4-8 MB tensors; by default glibc serves them with
    fresh ``mmap`` pages and returns them at once, so every click pays page faults (about a
    quarter of a CPU click on a 2-core VM). Raising the mmap threshold (32 MiB is glibc's maximum
    on 64-bit) and the trim threshold lets them be reused; the process keeps up to
    ``trim_threshold`` bytes of freed heap. Call once at application start. Returns ``False``
    (and changes nothing) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
