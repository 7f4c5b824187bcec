"""glibc heap tuning for the job server: keep freed large buffers for speed, give them back after a big drop.

Both calls are no-ops where glibc's ``mallopt``/``malloc_trim`` are missing (other platforms, musl).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

__all__ = ["keep_large_buffers", "release_free_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _libc_function(name: str) -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    function: Callable[..., int] | None = getattr(ctypes.CDLL(None), name, None)
    return function


_malloc_trim = _libc_function("malloc_trim")


def keep_large_buffers() -> None:
    """Let glibc keep freed large buffers instead of unmapping them.

    By default every allocation of 128 KiB or more (each large payload's bytes) is a fresh mmap whose pages are
    faulted in and unmapped again when freed: profiling 1 MiB jobs showed page faults as the largest cost. Raising
    the mmap and trim thresholds serves them from the heap.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        mallopt(_M_TRIM_THRESHOLD, 128 * 1024 * 1024)


def release_free_memory() -> None:
    """Return the heap's free pages to the system now: after dropping a partial body of many MiB, which the
    thresholds above would otherwise keep (up to 128 MiB) for good (#19 item 2)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
