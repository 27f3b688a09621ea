"""Give freed heap memory back to the system during long loops, so their peak memory follows from their settings."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


def release_free_heap() -> bool:
    """Return the free pages of glibc's heap to the system (`malloc_trim`), also those between live blocks.

    A loop that frees 1-32 MiB temporaries while keeping smaller arrays leaves holes its next
    temporaries no longer fit into, and the heap grows by up to a temporary per step: the same
    encode peaked anywhere from 1.7 to 8.7 GB. Calling this every few steps bounds that growth.
    Returns False where the C library has no `malloc_trim` (not glibc).
    """
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))
