"""Memory tuning of a job server process: glibc's heap (keep freed large buffers for speed, give them back after a
big drop and when the server goes quiet) and Python's cyclic garbage collector (run it rarely). ``app.run``, which
takes over its process (``gearworks serve``), turns them on; a ``JobServer`` started in another program's event
loop leaves that process's heap thresholds and collector as they are (``release_kept_memory`` does nothing there;
only dropping a connection's large partial body trims the heap, ``release_free_memory``).

The heap calls are no-ops where glibc's ``mallopt``/``malloc_trim`` are missing (other platforms, musl).
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable

__all__ = [
    "GC_THRESHOLDS",
    "RELEASE_WHEN_QUIET",
    "collect_rarely",
    "keep_large_buffers",
    "release_free_memory",
    "release_kept_memory",
]

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
    global _kept  # noqa: PLW0603 (one switch per process, set once by app.run)
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        mallopt(_M_TRIM_THRESHOLD, 128 * 1024 * 1024)
        _kept = True


_kept = False
RELEASE_WHEN_QUIET = 1.0
"""Seconds the board must have been still (no read, no due timer) before the hub's sweep gives the kept free heap
back (``release_kept_memory``)."""


def release_kept_memory() -> None:
    """Give back what ``keep_large_buffers`` kept, once traffic stops: a burst of submissions leaves megabytes of
    freed read and write buffers in the heap (about 50 bytes per job queued by a 100,000-job pipelined burst, #14),
    which a quiet server holding a deep queue should not sit on. A no-op in a process that did not keep them."""
    if _kept:
        release_free_memory()


def release_free_memory() -> None:
    """Return the heap's free pages to the system now: after dropping a partial body of many MiB, which the
    thresholds above would otherwise keep (up to 128 MiB) for good (#19 item 2)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


GC_THRESHOLDS = (50_000, 20, 100)
"""Collector thresholds of a server process (CPython's defaults are 700, 10, 10)."""


def collect_rarely() -> None:
    """Run the cyclic garbage collector about 70 times less often than CPython's default.

    A deep queue is hundreds of thousands of long-lived ``Job`` records, and each submission allocates a handful of
    tracked objects (the packet, its arguments, the job): with the default thresholds the collector rescans the
    young ones every 700 allocations and the whole queue again and again as it grows, about 0.6 µs of the 2.9 µs a
    background submission costs (measured in process, #14). The board frees its records by reference counting
    (``test_closed_connection_is_freed_without_gc``), so the collector has little to find; a young collection now
    scans up to 50,000 objects (about a millisecond).
    """
    gc.set_threshold(*GC_THRESHOLDS)
