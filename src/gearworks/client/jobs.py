"""What a client hands back: jobs (with their events and callbacks), status replies and task sets.

These records only hold state and wake waiters; the client session decides what happens to them. Async users
``await job`` and ``async for event in job``; the blocking client pumps its sockets until ``job.done``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypedDict, TypeVar, Unpack

from gearworks.connection import ServerAddress
from gearworks.errors import GearworksError
from gearworks.protocol import PacketType

__all__ = [
    "Call",
    "Callbacks",
    "CompleteEvent",
    "CreatedEvent",
    "DataEvent",
    "Event",
    "ExceptionEvent",
    "FailEvent",
    "Job",
    "JobHandle",
    "JobStatus",
    "Outcome",
    "Priority",
    "RetryEvent",
    "StatusEvent",
    "SubmitOptions",
    "TaskSet",
    "UniqueStatus",
    "WarningEvent",
    "all_finished",
]

log = logging.getLogger("gearworks.client")

T = TypeVar("T")
Priority = Literal["normal", "high", "low"]


class JobHandle(bytes):
    """A job handle as the server sent it (plain ``bytes``), remembering which server it belongs to."""

    server: ServerAddress | None = None

    @classmethod
    def on(cls, handle: bytes, server: ServerAddress) -> JobHandle:
        """``handle`` tagged with the ``server`` that issued it.

        The server is a class attribute of a subclass made once per server (cached), not an attribute of each
        handle: a ``bytes`` subclass cannot have slots, and a ``__dict__`` per handle costs memory and collector
        time when a client holds 100,000 of them.
        """
        if cls is not JobHandle:
            tagged = cls(handle)
            tagged.server = server
            return tagged
        return cls.of(server)(handle)

    @staticmethod
    def of(server: ServerAddress) -> type[JobHandle]:
        """The JobHandle subclass of ``server``'s handles: ``JobHandle.of(server)(handle)`` is ``on``'s result."""
        kind = _HANDLE_TYPES.get(server)
        if kind is None:
            if len(_HANDLE_TYPES) >= _HANDLE_TYPES_MAX:
                _HANDLE_TYPES.clear()
            kind = _HANDLE_TYPES[server] = type("JobHandle", (JobHandle,), {"server": server, "__module__": __name__})
        return kind

    def __reduce__(self) -> tuple[Callable[[bytes, ServerAddress], JobHandle], tuple[bytes, ServerAddress | None]]:
        return _handle, (bytes(self), self.server)


def _handle(handle: bytes, server: ServerAddress | None) -> JobHandle:
    """Unpickle a JobHandle."""
    return JobHandle(handle) if server is None else JobHandle.on(handle, server)


_HANDLE_TYPES: dict[ServerAddress, type[JobHandle]] = {}
_HANDLE_TYPES_MAX = 1024
"""Servers with a cached handle subclass before the cache starts over (a client that keeps replacing servers)."""


@dataclass(frozen=True, slots=True)
class CreatedEvent:
    """The server accepted the job (JOB_CREATED)."""

    handle: JobHandle


@dataclass(frozen=True, slots=True)
class DataEvent:
    """Partial result from the worker (WORK_DATA), decoded by the client's codec if it has one."""

    data: Any


@dataclass(frozen=True, slots=True)
class WarningEvent:
    """A warning from the worker (WORK_WARNING)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """Progress from the worker (WORK_STATUS); non-numeric fields read as 0, as gearmand's ``atoi`` does."""

    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class ExceptionEvent:
    """The worker raised (WORK_EXCEPTION, sent only to clients that set the ``exceptions`` option)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CompleteEvent:
    """The job succeeded (WORK_COMPLETE): its result, decoded by the client's codec if it has one. Foreground jobs
    only: a background job is done at its CreatedEvent."""

    result: Any


@dataclass(frozen=True, slots=True)
class FailEvent:
    """The job is over without a result: WORK_FAIL, exception, timeout, lost connection, refused submission."""

    error: GearworksError


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """The job failed and is being submitted again (``attempt`` counts from 1)."""

    attempt: int
    reason: GearworksError


Event = CreatedEvent | DataEvent | WarningEvent | StatusEvent | ExceptionEvent | CompleteEvent | FailEvent | RetryEvent
TERMINAL = (CompleteEvent, FailEvent)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A STATUS_RES: whether the server knows the job, whether a worker runs it, and its last progress."""

    handle: bytes
    known: bool
    running: bool
    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class UniqueStatus:
    """A STATUS_RES_UNIQUE: like JobStatus, found by unique key, plus the number of waiting clients."""

    unique: bytes
    known: bool
    running: bool
    numerator: int
    denominator: int
    client_count: int


@dataclass(slots=True)
class Callbacks:
    """Per-job callbacks; each is called from the client's I/O path, so it should be quick. Errors are logged."""

    on_created: Callable[[JobHandle], object] | None = None
    on_data: Callable[[Any], object] | None = None
    on_warning: Callable[[bytes], object] | None = None
    on_status: Callable[[int, int], object] | None = None
    on_exception: Callable[[bytes], object] | None = None
    on_complete: Callable[[Any], object] | None = None
    on_fail: Callable[[GearworksError], object] | None = None
    on_retry: Callable[[int], object] | None = None

    def fire(self, event: Event) -> None:
        """Call the callback that matches ``event``, logging (not raising) what it raises."""
        try:
            match event:
                case CreatedEvent(handle) if self.on_created:
                    self.on_created(handle)
                case DataEvent(data) if self.on_data:
                    self.on_data(data)
                case WarningEvent(data) if self.on_warning:
                    self.on_warning(data)
                case StatusEvent(numerator, denominator) if self.on_status:
                    self.on_status(numerator, denominator)
                case ExceptionEvent(data) if self.on_exception:
                    self.on_exception(data)
                case CompleteEvent(result) if self.on_complete:
                    self.on_complete(result)
                case FailEvent(error) if self.on_fail:
                    self.on_fail(error)
                case RetryEvent(attempt) if self.on_retry:
                    self.on_retry(attempt)
        except Exception:
            log.exception("job callback for %s raised", type(event).__name__)


class SubmitOptions(TypedDict, total=False):
    """Keyword options of every submission method.

    unique: the job's unique key; jobs of one function with the same key coalesce on the server. Default: none
        for foreground jobs; for background jobs a key of their own (a random 128-bit hex prefix per client and a
        counter, ``b"<32 hex>-<n>"``), so a persistent queue never squashes two of them (``unique=b""`` sends
        none). Foreground jobs with the same key on one connection share one submission.
    priority: "normal", "high" or "low".
    timeout: seconds from submission to result; the job then fails with JobTimeout [None: no limit].
    retry_count: how many times to submit again after WORK_FAIL, WORK_EXCEPTION or a lost connection, each after
        the client's ``retry_delay`` (doubling per attempt, up to ``retry_delay_max``) [0].
    on_created ... on_retry: callbacks for the job's events. A background job gets only ``on_created`` (it is done
        once the server has it).
    """

    unique: bytes | str | None
    priority: Priority
    timeout: float | None
    retry_count: int
    on_created: Callable[[JobHandle], object] | None
    on_data: Callable[[Any], object] | None
    on_warning: Callable[[bytes], object] | None
    on_status: Callable[[int, int], object] | None
    on_exception: Callable[[bytes], object] | None
    on_complete: Callable[[Any], object] | None
    on_fail: Callable[[GearworksError], object] | None
    on_retry: Callable[[int], object] | None


class Outcome(Generic[T]):
    """Something the client waits for: a result or an error, set once. Awaitable from asyncio."""

    __slots__ = ("_done", "_error", "_result", "_waiters")

    def __init__(self) -> None:
        self._done = False
        self._result: T | None = None
        self._error: GearworksError | None = None
        # One future per waiting task, so cancelling one waiter never cancels another's wait. A lone waiter (the
        # common case: one task, or one countdown over many jobs) is kept as it is, without a list per outcome.
        self._waiters: Waiter | list[Waiter] | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def error(self) -> GearworksError | None:
        """Why it failed, once done (None on success)."""
        return self._error

    def result(self) -> T:
        """The result, or raise the error.

        Raises:
            RuntimeError: not done yet.
        """
        if not self._done:
            raise RuntimeError(f"{self!r} is not done yet")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def _resolve(self, result: T) -> None:
        self._done = True
        self._result = result
        self._wake()

    def _reject(self, error: GearworksError) -> None:
        self._done = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, None
        if waiters is not None:
            if isinstance(waiters, list):
                _release(waiters)
            elif not waiters.done():
                waiters.set_result(None)

    def _watch(self, waiter: Waiter) -> None:
        """Have ``waiter.set_result(None)`` called once this outcome is done."""
        waiters = self._waiters
        if waiters is None:
            self._waiters = waiter
        elif isinstance(waiters, list):
            waiters.append(waiter)
        else:
            self._waiters = [waiters, waiter]

    def __await__(self) -> Generator[Any, None, T]:
        # Wait (asyncio) until done: one generator per await, no coroutine inside it.
        while not self._done:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watch(waiter)
            yield from waiter
        return self.result()


class Waiter(Protocol):
    """What an outcome wakes when it is done: an asyncio future, or a countdown over many outcomes."""

    def done(self) -> bool: ...

    def set_result(self, result: None, /) -> None: ...


def _release(waiters: list[Waiter]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class _Countdown:
    """Resolves ``future`` once ``remaining`` outcomes are done: one wake-up for a whole task set."""

    __slots__ = ("future", "remaining")

    def __init__(self, future: asyncio.Future[None], remaining: int) -> None:
        self.future = future
        self.remaining = remaining

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, result: None, /) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.future.set_result(result)


async def all_finished(outcomes: Iterable[Outcome[Any]]) -> None:
    """Wait (asyncio) until every outcome is done, woken once rather than once per outcome."""
    pending = [outcome for outcome in outcomes if not outcome.done]
    if pending:
        countdown = _Countdown(asyncio.get_running_loop().create_future(), len(pending))
        for outcome in pending:
            outcome._watch(countdown)
        await countdown.future


class Call(Outcome[T]):
    """A request that is not a job (echo, status, option): one reply per server asked."""

    __slots__ = ("expect", "name", "remaining", "server")

    def __init__(
        self, expect: PacketType, server: ServerAddress | None = None, remaining: int = 1, name: bytes = b""
    ) -> None:
        super().__init__()
        self.expect = expect
        self.server = server
        self.remaining = remaining
        self.name = name


class Job(Outcome[Any]):
    """One submitted job: its request, its handle once created, its events, and its result.

    ``await job`` (asyncio) returns the result (bytes, or what the client's codec decodes; a background job's
    result is its handle, and its events end with CreatedEvent) or raises JobFailed,
    JobException, JobTimeout, ConnectionLost or ServerError; ``async for event in job`` yields every event.
    """

    __slots__ = (
        "_watchers",
        "attempts",
        "background",
        "callbacks",
        "deadline",
        "events",
        "function",
        "group",
        "handle",
        "key",
        "packet",
        "priority",
        "retry_count",
        "server",
        "status",
        "unique",
        "workload",
    )

    def __init__(
        self,
        function: bytes,
        workload: bytes,
        unique: bytes,
        *,
        priority: Priority = "normal",
        background: bool = False,
        retry_count: int = 0,
        callbacks: Callbacks | None = None,
    ) -> None:
        super().__init__()
        self.function = function
        self.workload = workload
        self.unique = unique
        self.priority = priority
        self.background = background
        self.retry_count = retry_count
        self.callbacks = callbacks
        self.attempts = 0
        self.handle: JobHandle | None = None
        self.server: ServerAddress | None = None
        self.status: tuple[int, int] | None = None
        self.events: list[Event] = []
        self.deadline: float | None = None
        # Set by the session: the encoded packet (kept for resubmission), the coalescing key, and the jobs that
        # share this job's submission (itself first).
        self.packet: list[bytes] | tuple[()] = ()  # a batch's job: none of its own until submitted again
        self.key: tuple[bytes, bytes] | None = None
        self.group: list[Job] = [self]
        self._watchers: list[Waiter] | None = None  # event iterators waiting for the next event

    def __repr__(self) -> str:
        state = "done" if self._done else "pending"
        return f"<Job {self.function!r} handle={self.handle!r} {state}>"

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self.callbacks is not None:
            self.callbacks.fire(event)
        self._release_watchers()

    def _wake(self) -> None:
        Outcome._wake(self)
        self._release_watchers()

    def _created(self, handle: JobHandle) -> None:
        """A background job's JOB_CREATED: its one event, then its result (``_emit``, then ``_resolve``, in one call:
        it runs for every job of a batch)."""
        event = CreatedEvent(handle)
        self.handle = handle
        self.events.append(event)
        if self.callbacks is not None:
            self.callbacks.fire(event)
        self._done = True
        self._result = handle
        Outcome._wake(self)
        self._release_watchers()

    def _release_watchers(self) -> None:
        watchers, self._watchers = self._watchers, None
        if watchers is not None:
            _release(watchers)

    async def _next_event(self) -> None:
        watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._watchers is None:
            self._watchers = [watcher]
        else:
            self._watchers.append(watcher)
        await watcher

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[Event]:
        index = 0
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                yield event
                if isinstance(event, TERMINAL):
                    return
            if self._done:
                return
            await self._next_event()


class Submitter(Protocol):
    """What a TaskSet submits through: a client's queueing submit."""

    def _enqueue(self, function: str | bytes, workload: object, **options: Unpack[SubmitOptions]) -> Job: ...


class TaskSet:
    """Many foreground jobs submitted together and waited for together (the Gearman::Taskset of Perl).

    ``add`` queues a job without waiting for anything; the client's ``wait`` sends what is queued and returns
    once every job is done or the timeout has passed (the rest then fail with JobTimeout).
    """

    def __init__(self, client: Submitter) -> None:
        self._client = client
        self.jobs: list[Job] = []

    def add(self, function: str | bytes, workload: object = b"", **options: Unpack[SubmitOptions]) -> Job:
        """Queue one job (per-task callbacks go in ``options``) and return it."""
        job = self._client._enqueue(function, workload, **options)
        self.jobs.append(job)
        return job

    def __len__(self) -> int:
        return len(self.jobs)

    @property
    def pending(self) -> int:
        """Jobs not done yet."""
        return sum(1 for job in self.jobs if not job.done)

    def results(self) -> list[Any]:
        """Each done job's result or error, in the order added."""
        return [job.error if job.error is not None else job.result() for job in self.jobs if job.done]
