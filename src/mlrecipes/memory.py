"""Giving freed memory back to the system, where the C library keeps it.

glibc's malloc keeps freed blocks of its heap for reuse, and after the first large free it serves
arrays up to 32 MB from that heap instead of their own mappings (its dynamic mmap threshold): the
float32 columns of a 5 M-row table (14-20 MB each) stay in the process's RSS after they are freed.
`malloc_trim` returns the free pages of every arena; nothing else in the libraries does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only (not macOS, musl)


def trim() -> None:
    """Return the heap's free pages to the system (a no-op without glibc)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
