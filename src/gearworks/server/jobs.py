"""Job and function records, job handles and the unique index of the job server.

A ``Job`` is the server's whole memory of one submission: one is kept per queued or running job, so it is a
``__slots__`` record whose unset fields share constants, and whose rarely set ones share one ``JobExtras`` (about
400 bytes per queued 100-byte job is the budget, issue #14). A ``Function`` holds one name's queues and unique
index. Both are generic in the peer class that holds and waits on jobs (``peers.Peer``), so this module imports
nothing of the server but the counter records of ``stats`` (which import nothing): ``peers`` builds on it,
``board`` on both. No I/O and no scheduling here; ``board`` decides what happens to jobs.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar

from gearworks.server.stats import UNCOUNTED, FunctionCounters

__all__ = [
    "MAX_HANDLE_PREFIX",
    "MAX_UNIQUE",
    "NO_EXTRAS",
    "DeadJob",
    "Function",
    "HandleFactory",
    "Job",
    "JobExtras",
    "JobState",
    "Priority",
    "WriteState",
    "unique_key",
]

P = TypeVar("P")
T = TypeVar("T")
"""The peer class (``peers.Peer``): workers holding jobs, clients waiting on them."""

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


class JobExtras:
    """The fields most jobs never set: an epoch time, a reducer, a status, a CAN_DO_TIMEOUT deadline, lost
    hand-outs. A ``Job`` shares ``NO_EXTRAS`` until one of them is set, so a queued job does not carry six slots it
    does not use (48 bytes of the ~400 a queued 100-byte job may cost, issue #14)."""

    __slots__ = ("deadline", "denominator", "numerator", "reducer", "retries", "when")

    def __init__(self) -> None:
        self.when = 0.0
        self.reducer: bytes | None = None
        self.numerator = _ZERO
        self.denominator = _ZERO
        self.deadline = 0.0
        self.retries = 0


NO_EXTRAS = JobExtras()
"""The extras every job starts with, read-only: a job's first write to one of them gives it its own."""


class _Extra(Generic[T]):
    """A ``Job`` attribute kept in its extras: read from the shared defaults, written to the job's own copy."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, job: Job[Any], owner: type | None = None) -> T:
        value: T = getattr(job.extras, self.name)
        return value

    def __set__(self, job: Job[Any], value: T) -> None:
        extras = job.extras
        if extras is NO_EXTRAS:
            extras = job.extras = JobExtras()
        setattr(extras, self.name, value)


class Job(Generic[P]):
    """One job.

    ``clients`` is None until a foreground client attaches (most jobs in a deep queue are background jobs, and a
    list each would cost ~56 bytes); ``worker`` is the peer holding the job while it runs; ``at`` is when it was
    last queued, then when it was handed out (the board's ``now``: for the wait and run histograms of ``stats``;
    set by the board when it queues the job, not here, which saves a store per submission). The rarely set
    fields (``when``, ``reducer``, ``numerator``, ``denominator``, ``deadline``, ``retries``) live in ``extras``.
    A job that leaves the board is marked GONE and may linger as a tombstone in its function's queue until a grab
    skips it.
    """

    __slots__ = (
        "at",
        "background",
        "clients",
        "extras",
        "function",
        "handle",
        "priority",
        "state",
        "unique",
        "worker",
        "workload",
        "written",
    )
    at: float
    when = _Extra[float]()
    reducer = _Extra[bytes | None]()
    numerator = _Extra[bytes]()
    denominator = _Extra[bytes]()
    deadline = _Extra[float]()
    retries = _Extra[int]()

    def __init__(  # noqa: PLR0917 (the board passes all eight by position: one per submission)
        self,
        handle: bytes,
        function: Function[P],
        unique: bytes,
        workload: bytes,
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
        self.state = _QUEUED
        self.worker: P | None = None
        self.clients: list[P] | None = None
        self.written = _WRITTEN
        if when or reducer is not None:
            self.extras = extras = JobExtras()
            extras.when = when
            extras.reducer = reducer
        else:
            self.extras = NO_EXTRAS

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.function.name!r} {self.state.name}>"

    def attached(self) -> Iterator[P]:
        """Attached foreground clients, the most recently attached first (gearmand's order, PROTOCOL.md §3.7)."""
        if self.clients:
            yield from reversed(self.clients)


class Function(Generic[P]):
    """One function name: its queues, the peers registered for it and those asleep, its maxqueue caps.

    ``counts`` are live queued jobs per priority (tombstones excluded); ``delayed`` are epoch jobs not yet due,
    reported as queued normal jobs like gearmand does. A function nobody ever queued a job for has no queues yet
    (``()``, three deques cost 2.3 KB) and no unique index: a worker may register many names it never gets work
    for (#19 item 5). ``counters`` are the function's record in ``Stats`` once a job was created for it
    (``UNCOUNTED`` before: a name only registered costs no counters), held here so that counting an event needs no
    lookup by name.
    """

    __slots__ = (
        "counters",
        "counts",
        "delayed",
        "maxqueue",
        "name",
        "queues",
        "running",
        "sleepers",
        "tombstones",
        "uniques",
        "workers",
    )

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.counters: FunctionCounters = UNCOUNTED
        self.queues: tuple[deque[Job[P]], deque[Job[P]], deque[Job[P]]] | tuple[()] = ()
        self.counts = [0, 0, 0]
        self.delayed = 0
        self.running = 0
        self.tombstones = 0
        self.workers: dict[P, None] = {}
        self.sleepers: dict[P, None] = {}
        self.uniques: dict[bytes, Job[P]] | None = None
        """Live jobs by ``unique_key``; None until a job with a unique comes."""
        self.maxqueue: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"<Function {self.name!r}>"

    def by_unique(self, key: bytes) -> Job[P] | None:
        """The live job indexed under ``key``, if any."""
        uniques = self.uniques
        return None if uniques is None else uniques.get(key)

    def index_unique(self, key: bytes, job: Job[P]) -> None:
        """Index ``job`` under ``key`` (replacing what was there)."""
        uniques = self.uniques
        if uniques is None:
            self.uniques = {key: job}
        else:
            uniques[key] = job

    def unindex_unique(self, key: bytes, job: Job[P]) -> None:
        """Remove ``key`` from the index if it still points at ``job``."""
        uniques = self.uniques
        if uniques is not None and uniques.get(key) is job:
            del uniques[key]

    def sweep(self) -> None:
        """Drop the tombstones of cancelled and abandoned jobs from the queues (they would otherwise stay until a
        worker grabs past them, and a function nobody works on would keep them all)."""
        high, normal, low = (deque(job for job in queue if job.state is _QUEUED) for queue in self.queues)
        self.queues = (high, normal, low)
        self.tombstones = 0

    @property
    def total(self) -> int:
        """Queued (due or not) plus running jobs: the `status` TOTAL column and what maxqueue caps."""
        counts = self.counts
        return counts[0] + counts[1] + counts[2] + self.delayed + self.running

    @property
    def idle(self) -> bool:
        """No job, no registration: safe to drop."""
        return not self.workers and not self.total

    @property
    def unused(self) -> bool:
        """Idle and without an admin maxqueue cap: nothing would be lost by forgetting it."""
        return not self.workers and self.maxqueue is None and not self.total


def unique_key(unique: bytes, workload: bytes) -> bytes | None:
    """The coalescing key of ``Function.uniques``: none for an empty unique, the payload for ``-`` (PROTOCOL.md
    §3.3). A NUL cannot occur in a unique on the wire, so ``\\0`` + payload never collides with a real unique."""
    if not unique:
        return None
    if unique == b"-":
        return b"\0" + workload if workload else None
    return unique


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
