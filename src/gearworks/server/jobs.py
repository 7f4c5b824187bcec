"""Job records and job handles for the job server.

A ``Job`` is the server's whole memory of one submission: one is kept per queued or running job, so it is a
``__slots__`` record whose unset fields share constants (about 600 bytes per queued 100-byte job is the budget,
issue #4). No I/O and no scheduling here; ``board`` decides what happens to jobs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gearworks.server.board import Function, Peer

__all__ = [
    "MAX_HANDLE_PREFIX",
    "MAX_UNIQUE",
    "DeadJob",
    "HandleFactory",
    "Job",
    "JobState",
    "Priority",
    "WriteState",
]

MAX_UNIQUE = 64
"""Longest unique key (and reducer name) accepted; longer ones get ARGUMENT_TOO_LARGE (PROTOCOL.md §1.4)."""
MAX_HANDLE_PREFIX = 48
"""Handles must stay under 64 bytes (gearmand's GEARMAND_JOB_HANDLE_SIZE) with room for the counter."""


class Priority(IntEnum):
    """Queue a job waits in; lower value is served first (PROTOCOL.md §3.4)."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


class JobState(IntEnum):
    """Where a job is: waiting for its epoch time, queued, held by a worker, or finished and forgotten."""

    DELAYED = 0
    QUEUED = 1
    RUNNING = 2
    GONE = 3


class WriteState(IntEnum):
    """Whether a background job is safe in a durable queue: JOB_CREATED waits while it is PENDING (PROTOCOL.md §7:
    never acknowledge a job a crash could lose); FAILED means the write was lost and the submitter gets an ERROR."""

    WRITTEN = 0
    PENDING = 1
    FAILED = 2


_ZERO = b"0"
_WRITTEN = WriteState.WRITTEN
_QUEUED = JobState.QUEUED  # a module constant: enum attribute lookups are slow on the submission path


class Job:
    """One job.

    ``clients`` is None until a foreground client attaches (most jobs in a deep queue are background jobs, and a
    list each would cost ~56 bytes); ``worker`` is the peer holding the job while it runs. A job that leaves the
    board is marked GONE and may linger as a tombstone in its function's queue until a grab skips it.
    """

    __slots__ = (
        "background",
        "clients",
        "deadline",
        "denominator",
        "function",
        "handle",
        "numerator",
        "priority",
        "reducer",
        "retries",
        "state",
        "unique",
        "when",
        "worker",
        "workload",
        "written",
    )

    def __init__(
        self,
        handle: bytes,
        function: Function,
        unique: bytes,
        workload: bytes,
        *,
        priority: Priority,
        background: bool,
        reducer: bytes | None = None,
        when: float = 0.0,
    ) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.workload = workload
        self.priority = priority
        self.background = background
        self.reducer = reducer
        self.when = when
        self.state = _QUEUED
        self.worker: Peer | None = None
        self.clients: list[Peer] | None = None
        self.numerator = _ZERO
        self.denominator = _ZERO
        self.retries = 0
        self.deadline = 0.0
        self.written = _WRITTEN

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.function.name!r} {self.state.name}>"

    def attached(self) -> Iterator[Peer]:
        """Attached foreground clients, the most recently attached first (gearmand's order, PROTOCOL.md §3.7)."""
        if self.clients:
            yield from reversed(self.clients)


@dataclass(frozen=True, slots=True)
class DeadJob:
    """A background job buried after ``--job-retries`` hand-outs without a result: kept until an admin requeues or
    purges it (gearmand drops such jobs, PROTOCOL.md §3.10)."""

    handle: bytes
    function: bytes
    unique: bytes
    workload: bytes
    priority: Priority
    reducer: bytes | None
    retries: int


class HandleFactory:
    """Makes job handles ``<prefix>:<n>``: ``H:<hostname>`` by default, ``n`` counting from 1 (PROTOCOL.md §3.1).

    Raises:
        ValueError: a prefix too long for a 64-byte handle.
    """

    __slots__ = ("_next", "prefix")

    def __init__(self, prefix: bytes | None = None, start: int = 1) -> None:
        if prefix is None:
            prefix = b"H:" + os.uname().nodename.encode("utf-8", "replace")
        if len(prefix) > MAX_HANDLE_PREFIX:
            raise ValueError(f"job handle prefix of {len(prefix)} bytes is over the {MAX_HANDLE_PREFIX}-byte limit")
        self.prefix = prefix + b":"
        self._next = start

    def __call__(self) -> bytes:
        """The next handle."""
        n = self._next
        self._next = n + 1
        return self.prefix + str(n).encode()

    def skip_past(self, handle: bytes) -> None:
        """Never hand out ``handle`` again: used when jobs are restored from a durable queue (PROTOCOL.md §6.1 #24)."""
        if handle.startswith(self.prefix):
            tail = handle[len(self.prefix) :]
            if tail.isdigit() and int(tail) >= self._next:
                self._next = int(tail) + 1
