"""The job board: every job, function, worker ability and sleeping worker of a job server, with no sockets.

How this works: each connection is a ``Peer`` (``peers``), an outbox on the board's one ``ready`` list. The driver
(``connections``) feeds decoded packets to the packet table (``dispatch``), whose handlers call the board; whatever
the board answers is appended to the peers it concerns, and after each batch, timer tick or durable write the
driver takes ``board.take_ready()`` and writes each of those peers' ``take_out()`` once. A ``Function`` holds three
FIFO queues (high, normal, low), the peers registered for it and those of them asleep. A job is DELAYED (epoch
time in the future), QUEUED, RUNNING (held by one worker peer) or GONE; finished, cancelled or abandoned jobs leave
the handle and unique indexes at once and stay in a queue only as tombstones that the next grab skips. A background
job handed out ``job_retries`` times without a result is buried in ``dead`` (a ``dead.DeadLetters``, mirrored in the
store's dead letters) until an admin requeues or purges it. Time never comes from a clock here: the driver sets
``now`` before each batch and calls ``tick(now)`` when ``next_deadline()`` passes (epoch jobs due, CAN_DO_TIMEOUT
expiries).

Behaviour follows gearmand 1.1.20 (PROTOCOL.md §3) except where PROTOCOL.md §6/§7 says to fix it: CAN_DO_TIMEOUT
is in seconds and fails the job, cancelled and abandoned queued jobs leave the counts at once, a background job
joined by a foreground client survives that client, epoch jobs wake sleeping workers when they come due and never
block other jobs, every request that gets a reply in gearmand gets exactly one here.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from itertools import islice

from gearworks.protocol.outbox import take_ready
from gearworks.protocol.packets import PacketType
from gearworks.server.dead import DeadLetters
from gearworks.server.jobs import (
    MAX_UNIQUE,
    Function,
    HandleFactory,
    Job,
    JobState,
    Priority,
    WriteState,
    unique_key,
)
from gearworks.server.peers import Peer, SleepState
from gearworks.server.queues.base import QueueStore, StoredJob
from gearworks.server.queues.memory import MemoryStore
from gearworks.server.stats import BUCKETS, SUBMITTED_SLOT, UNCOUNTED, Stats

__all__ = ["Board", "Refused"]

# Reply types as plain ints: IntEnum attribute lookups and packing cost measurably per packet.
_JOB_CREATED = int(PacketType.JOB_CREATED)
_NOOP = int(PacketType.NOOP)
_WORK_FAIL = int(PacketType.WORK_FAIL)
_NORMAL = Priority.NORMAL
_QUEUED, _RUNNING, _DELAYED, _GONE = JobState.QUEUED, JobState.RUNNING, JobState.DELAYED, JobState.GONE
_WRITTEN, _PENDING, _FAILED = WriteState.WRITTEN, WriteState.PENDING, WriteState.FAILED
_AWAKE, _ASLEEP = SleepState.AWAKE, SleepState.ASLEEP
_ZERO = b"0"
_MEMORY_CAP = b"Job queue memory cap reached (--max-queued-bytes)"


class Refused(Exception):
    """A submission the board turned down; ``body`` is the ERROR packet's ``code\\0text``."""

    def __init__(self, code: bytes, text: bytes) -> None:
        super().__init__(f"{code.decode()}: {text.decode()}")
        self.body = code + b"\0" + text


class Board:
    """Jobs, functions and peers of one server: their state, assignment of jobs to workers, durable changes.

    Args:
        handles: makes job handles (default ``H:<hostname>:<n>``).
        store: where background jobs are persisted (default: memory, i.e. nowhere).
        job_retries: ``-j``: a job whose worker is lost this many times is failed, a background one buried as a
            dead letter (0 = never).
        round_robin: ``-R``: after a grab, the function served goes to the back of that worker's list.
        worker_wakeup: ``-w``: wake at most this many sleeping workers per queued job (0 = all).
        exceptions: ``--exceptions``: every new peer starts with the exceptions option on.
        max_queued_bytes: ``--max-queued-bytes``: submissions that would take the workload bytes of live jobs
            past this are refused with QUEUE_ERROR (0 = no cap; replayed and requeued dead jobs always count).
        stats: where job events are counted (a fresh ``Stats`` by default).
    """

    def __init__(
        self,
        *,
        handles: HandleFactory | None = None,
        store: QueueStore | None = None,
        job_retries: int = 0,
        round_robin: bool = False,
        worker_wakeup: int = 0,
        exceptions: bool = False,
        max_queued_bytes: int = 0,
        stats: Stats | None = None,
    ) -> None:
        self.handles = handles or HandleFactory()
        self._next_handle = self.handles.__call__  # a bound method: calling the instance costs a slot lookup
        self.stats = stats if stats is not None else Stats()
        self.store: QueueStore = store or MemoryStore()
        self.job_retries = job_retries
        self.round_robin = round_robin
        self.worker_wakeup = worker_wakeup
        self.exceptions = exceptions
        self.max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0
        """Workload bytes of every live job (what ``max_queued_bytes`` caps)."""
        self.now = 0.0
        self.functions: dict[bytes, Function[Peer]] = {}
        self.jobs: dict[bytes, Job[Peer]] = {}
        self.peers: dict[Peer, None] = {}
        self._delayed: list[tuple[float, int, Job[Peer]]] = []
        self._timeouts: list[tuple[float, int, Job[Peer]]] = []
        self._compact_at = 1024
        self._seq = itertools.count()
        self._collect = self.store.durable
        self._added: list[Job[Peer]] = []
        self._removed: list[bytes] = []
        self.dead = DeadLetters(self._collect)
        """Dead letters by handle, oldest first."""
        self.holding: set[Peer] = set()
        """Peers with a JOB_CREATED waiting for a durable write."""
        self.ready: list[Peer] = []
        """Peers with output since the last ``take_ready`` (the outbox list every peer of this board shares)."""

    # -- peers ---------------------------------------------------------------------------------------------

    def connect(
        self, *, fd: int = -1, host: bytes = b"127.0.0.1", address: bytes = b"127.0.0.1:0", local: bool = True
    ) -> Peer:
        """A new connection's peer: ``fd`` and ``host`` as admin ``workers`` shows them, ``address`` as
        ``ip:port``, ``local`` for loopback and Unix-socket peers (they may ``shutdown``)."""
        peer = Peer(self.ready, fd=fd, host=host, address=address, local=local)
        peer.exceptions = self.exceptions
        self.peers[peer] = None
        self.stats.connections_total += 1  # counted
        return peer

    def take_ready(self) -> list[Peer]:
        """The peers with output, in the order they got it; the driver writes each one's ``take_out()``."""
        return take_ready(self.ready)

    def disconnect(self, peer: Peer) -> None:
        """Forget a connection: its jobs in hand are requeued, its waits detached (PROTOCOL.md §3.10, §3.11). Its
        output stays queued (a closing connection still writes why); the driver discards it once the socket is
        gone."""
        if peer not in self.peers:
            return
        del self.peers[peer]
        self.holding.discard(peer)
        dropped = self._drop_abilities(peer, None)
        for job in list(peer.running):
            self._requeue(job)
        for job in peer.waiting:
            clients = job.clients
            if clients is None:
                continue
            job.clients = [client for client in clients if client is not peer] or None
            if job.clients is None and not job.background and job.state is not _RUNNING:
                self.finish(job)
        peer.waiting = {}
        for function in dropped:
            self._forget_if_unused(function)

    # -- functions and abilities ---------------------------------------------------------------------------

    def function(self, name: bytes) -> Function[Peer]:
        """The function called ``name``, created on first use (§3.2)."""
        function = self.functions.get(name)
        if function is None:
            function = self.functions[name] = Function(name)
        return function

    def _forget_if_unused(self, function: Function[Peer]) -> None:
        """Forget a function with no worker, no job and no admin maxqueue cap, when its last worker or job goes
        (gearmand keeps every name it ever saw: 200,000 names held 573 MB for good, #19 item 5). Only such
        transitions forget: a function made by admin ``create function``, or whose cap is lifted, stays until then."""
        functions = self.functions
        # ``is function``: already forgotten when a requeue that failed the job finished it first.
        if (
            not function.workers
            and function.maxqueue is None
            and not function.total
            and functions.get(function.name) is function
        ):
            del functions[function.name]

    def can_do(self, peer: Peer, name: bytes, timeout: float = 0.0) -> None:
        """Register an ability. Abilities are a set: registering a function again makes it the newest with this
        timeout, where gearmand lists and counts it twice (README, Compatibility; #19 item 6)."""
        function = self.function(name)
        abilities = peer.abilities
        if function in abilities:
            del abilities[function]
        abilities[function] = timeout
        function.workers[peer] = None
        if peer.sleep is _ASLEEP:
            function.sleepers[peer] = None

    def cant_do(self, peer: Peer, name: bytes | None) -> None:
        """Drop the ability ``name`` (all if None) and requeue the peer's jobs of the functions dropped."""
        dropped = self._drop_abilities(peer, name)
        if dropped and peer.running:
            for job in list(peer.running):
                if job.function in dropped:
                    self._requeue(job)
        for function in dropped:
            self._forget_if_unused(function)

    def _drop_abilities(self, peer: Peer, name: bytes | None) -> dict[Function[Peer], float]:
        """Remove abilities from the peer and the peer from their functions; returns what was removed."""
        abilities = peer.abilities
        if name is None:
            dropped, peer.abilities = abilities, {}
        else:
            function = self.functions.get(name)
            if function is None or function not in abilities:
                return {}
            dropped = {function: abilities.pop(function)}
        for function in dropped:
            del function.workers[peer]
            function.sleepers.pop(peer, None)
        return dropped

    # -- submissions ---------------------------------------------------------------------------------------

    def submit(
        self,
        name: bytes,
        unique: bytes,
        workload: bytes,
        *,
        priority: Priority = _NORMAL,
        background: bool = False,
        client: Peer | None = None,
        reducer: bytes | None = None,
        when: float = 0.0,
        now: float = 0.0,
    ) -> Job[Peer]:
        """Create a job, or attach to the live one with the same (function, unique) (PROTOCOL.md §3.3).

        Raises:
            Refused: unique or reducer over 64 bytes, or the function's maxqueue reached.
        """
        if len(unique) > MAX_UNIQUE or (reducer is not None and len(reducer) > MAX_UNIQUE):
            raise Refused(b"ARGUMENT_TOO_LARGE", b"Unique value too large")
        function = self.functions.get(name) or self.function(name)
        key = unique_key(unique, workload)
        if key is not None:
            job = function.by_unique(key)
            if job is not None:
                if client is not None:
                    self._attach(job, client)
                return job
        caps = function.maxqueue
        if caps is not None and caps[priority] and function.total >= caps[priority]:
            raise Refused(b"QUEUE_ERROR", b"Job queue is full")
        size = len(workload)
        if self.max_queued_bytes and self.queued_bytes + size > self.max_queued_bytes:
            raise Refused(b"QUEUE_ERROR", _MEMORY_CAP)
        handle = self._next_handle()
        job = Job(handle, function, unique, workload, priority, background, reducer, when)
        self.jobs[handle] = job
        self.queued_bytes += size
        if key is not None:
            function.index_unique(key, job)
        if client is not None:
            self._attach(job, client)
        if background and self._collect:
            self._added.append(job)
            job.written = _PENDING
        if when > now:
            job.state = _DELAYED
            function.delayed += 1
            heapq.heappush(self._delayed, (when, next(self._seq), job))
            self._counted(function)
        else:  # _enqueue, inlined: it runs for every job
            job.at = self.now
            queues = function.queues
            if not queues:
                function.queues = queues = (deque(), deque(), deque())
                self._counted(function)
            queues[priority].append(job)
            function.counts[priority] += 1
            if function.sleepers:
                self._wake(function)
        counters = function.counters  # counted
        counters.submitted[SUBMITTED_SLOT[priority] + background] += 1  # counted
        counters.bytes_in += size  # counted
        return job

    def _counted(self, function: Function[Peer]) -> None:
        """Give the function its counters when its first job comes (a name only registered costs none, #19 item 5):
        ``_enqueue`` does it with the queues, a job that is not queued at once (epoch) does it here."""
        if function.counters is UNCOUNTED:
            function.counters = self.stats.function(function.name)

    def _attach(self, job: Job[Peer], client: Peer) -> None:
        if job.clients is None:
            job.clients = [client]
        else:
            job.clients.append(client)
        client.waiting[job] = None

    def _enqueue(self, job: Job[Peer]) -> None:
        """Queue a job at the tail of its priority's queue and wake its sleeping workers (``submit`` inlines this
        for new jobs: keep the two in step)."""
        job.state = _QUEUED
        job.at = self.now
        function = job.function
        queues = function.queues
        if not queues:
            function.queues = queues = (deque(), deque(), deque())
            self._counted(function)
        queues[job.priority].append(job)
        function.counts[job.priority] += 1
        if function.sleepers:
            self._wake(function)

    # -- sleeping workers ------------------------------------------------------------------------------------
    #
    # How a worker sleeps (PROTOCOL.md §3.8): ``peer.sleep`` moves only in the methods below and ``can_do``.
    #
    #   state    event                                     next     output, bookkeeping
    #   AWAKE    PRE_SLEEP, a job it can do is waiting     AWAKE    NOOP
    #   AWAKE    PRE_SLEEP, nothing to do                  ASLEEP   listed in ``sleepers`` of each of its functions
    #   ASLEEP   PRE_SLEEP, a job it can do is waiting     ASLEEP   NOOP (stays listed)
    #   ASLEEP   CAN_DO f                                  ASLEEP   listed in f's ``sleepers`` too
    #   ASLEEP   a job queued or due for one of them       AWAKE    NOOP (at most ``worker_wakeup`` per job), unlisted
    #   ASLEEP   GRAB_JOB, GRAB_JOB_UNIQ, GRAB_JOB_ALL     AWAKE    unlisted
    #   any      CANT_DO f, RESET_ABILITIES, disconnect    same     unlisted from the functions dropped

    def _wake(self, function: Function[Peer]) -> None:
        """NOOP the sleeping workers of ``function`` (at most ``worker_wakeup``, oldest sleepers first)."""
        sleepers = function.sleepers
        limit = self.worker_wakeup
        woken = list(islice(sleepers, limit)) if limit else list(sleepers)
        for peer in woken:
            self._unsleep(peer)
            peer.send(_NOOP, b"")

    def _unsleep(self, peer: Peer) -> None:
        peer.sleep = _AWAKE
        for function in peer.abilities:
            function.sleepers.pop(peer, None)

    def runnable(self, peer: Peer) -> bool:
        """Whether a job is waiting that ``peer`` can do."""
        for function in peer.abilities:
            counts = function.counts
            if counts[0] or counts[1] or counts[2]:
                return True
        return False

    def pre_sleep(self, peer: Peer) -> bool:
        """PRE_SLEEP: NOOP at once if work is waiting (returns True), else mark the peer asleep (§3.8)."""
        if self.runnable(peer):
            peer.send(_NOOP, b"")
            return True
        peer.sleep = _ASLEEP
        for function in peer.abilities:
            function.sleepers[peer] = None
        return False

    # -- workers -------------------------------------------------------------------------------------------

    def grab(self, peer: Peer, now: float) -> Job[Peer] | None:
        """Hand ``peer`` the next job: newest registration first, high before normal before low (§3.4)."""
        if peer.sleep is _ASLEEP:
            self._unsleep(peer)
        abilities = peer.abilities
        for function, timeout in reversed(abilities.items()):
            counts = function.counts
            if not (counts[0] or counts[1] or counts[2]):
                continue
            for priority, queue in enumerate(function.queues):
                while queue:
                    job = queue.popleft()
                    if job.state is not _QUEUED:
                        function.tombstones -= 1  # a cancelled or abandoned job
                        continue
                    counts[priority] -= 1
                    function.running += 1
                    job.state = _RUNNING
                    job.worker = peer
                    peer.running.add(job)
                    waited = now - job.at  # counted (Histogram.observe, inlined: it runs for every job)
                    wait = function.counters.wait  # counted
                    wait.buckets[bisect_left(BUCKETS, waited)] += 1  # counted
                    wait.total += waited  # counted
                    job.at = now
                    if timeout:
                        job.deadline = deadline = now + timeout
                        self._push_timeout(deadline, job)
                    if self.round_robin:
                        # The function served is tried last next time: first in the dict, as the oldest.
                        peer.abilities = {function: timeout, **abilities}
                    return job
        return None

    def _push_timeout(self, deadline: float, job: Job[Peer]) -> None:
        """Remember a CAN_DO_TIMEOUT deadline; entries of jobs that ended stay until they expire, so the heap is
        compacted whenever it doubles, keeping it proportional to the jobs really running."""
        timeouts = self._timeouts
        heapq.heappush(timeouts, (deadline, next(self._seq), job))
        if len(timeouts) >= self._compact_at:
            live = [entry for entry in timeouts if entry[2].state is _RUNNING and entry[2].deadline == entry[0]]
            heapq.heapify(live)
            self._timeouts = live
            self._compact_at = max(1024, 2 * len(live))

    def held(self, peer: Peer, handle: bytes) -> Job[Peer] | None:
        """The job ``handle`` if ``peer`` is the worker running it."""
        job = self.jobs.get(handle)
        if job is None or job.worker is not peer:
            return None
        return job

    def _requeue(self, job: Job[Peer]) -> None:
        """Put a job its worker let go of back at the tail of its queue, or fail it after ``job_retries`` (burying
        a background one)."""
        job.retries += 1
        exhausted = self.job_retries and job.retries >= self.job_retries
        if exhausted or (not job.background and not job.clients):
            if exhausted and job.background:
                self.dead.bury(job)
                job.function.counters.dead_lettered += 1  # counted
            else:
                job.function.counters.failed += 1  # counted
            self.fail(job)
            return
        job.function.counters.retried += 1  # counted
        worker = job.worker
        if worker is not None:
            worker.running.discard(job)
            job.worker = None
        job.function.running -= 1
        job.numerator = job.denominator = _ZERO
        self._enqueue(job)

    def requeue_dead(self, handle: bytes | None) -> int:
        """Put dead letters (one, or all for ``None``) back at the tail of their queues with their handles and no
        retries, waking sleeping workers; returns how many."""
        handles = self.dead.named(handle)
        for each in handles:
            dead = self.dead.unbury(each)
            function = self.function(dead.function)
            job = Job(
                each, function, dead.unique, dead.workload, priority=dead.priority, background=True,
                reducer=dead.reducer,
            )  # fmt: skip
            self.jobs[each] = job
            self.queued_bytes += len(dead.workload)
            key = unique_key(dead.unique, dead.workload)
            if key is not None and function.by_unique(key) is None:
                function.index_unique(key, job)
            if self._collect:
                self._added.append(job)
            self._enqueue(job)
        return len(handles)

    def purge_dead(self, handle: bytes | None) -> int:
        """Forget dead letters (one, or all for ``None``); returns how many."""
        handles = self.dead.named(handle)
        for each in handles:
            self.dead.unbury(each)
        return len(handles)

    def fail(self, job: Job[Peer]) -> None:
        """End a job with WORK_FAIL to every attached client (cancel, timeout, retries exhausted)."""
        for client in job.attached():
            client.send(_WORK_FAIL, job.handle)
        self.finish(job)

    def finish(self, job: Job[Peer]) -> None:
        """Remove a job from every index and count (its result, if any, was sent); a queued one stays behind as a
        tombstone."""
        state = job.state
        if state is _GONE:
            return
        function = job.function
        if state is _RUNNING:
            worker = job.worker
            if worker is not None:
                worker.running.discard(job)
                job.worker = None
            function.running -= 1
        elif state is _QUEUED:
            function.counts[job.priority] -= 1
            function.tombstones += 1
            if function.tombstones > 1024 and function.tombstones > sum(function.counts):
                function.sweep()
        else:
            function.delayed -= 1
        job.state = _GONE
        del self.jobs[job.handle]
        key = unique_key(job.unique, job.workload)
        if key is not None:
            function.unindex_unique(key, job)
        self.queued_bytes -= len(job.workload)
        job.workload = b""  # a tombstone left in a queue must not keep its payload
        if job.clients is not None:
            for client in job.clients:
                client.waiting.pop(job, None)
        if job.background and self._collect:
            self._removed.append(job.handle)
        if not function.workers:
            self._forget_if_unused(function)

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: fail and forget the job; a worker's later results get JOB_NOT_FOUND (§6.1 #9)."""
        job = self.jobs.get(handle)
        if job is None:
            return False
        job.function.counters.cancelled += 1  # counted
        self.fail(job)
        return True

    # -- timers --------------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do: an epoch job comes due or a CAN_DO_TIMEOUT may expire."""
        delayed, timeouts = self._delayed, self._timeouts
        if not delayed:
            return timeouts[0][0] if timeouts else None
        if not timeouts:
            return delayed[0][0]
        return min(delayed[0][0], timeouts[0][0])

    def tick(self, now: float) -> None:
        """Release due epoch jobs (waking their sleepers) and fail jobs whose worker ran past CAN_DO_TIMEOUT."""
        self.now = now
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            job = heapq.heappop(delayed)[2]
            if job.state is _DELAYED:
                job.function.delayed -= 1
                self._enqueue(job)
        timeouts = self._timeouts
        while timeouts and timeouts[0][0] <= now:
            deadline, _, job = heapq.heappop(timeouts)
            if job.state is _RUNNING and job.deadline == deadline:
                job.function.counters.timed_out += 1  # counted
                self.fail(job)

    # -- persistence ---------------------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """Whether durable changes wait for ``take_changes``."""
        return bool(self._added or self._removed or self.dead.changed)

    def take_changes(self) -> tuple[list[StoredJob], list[bytes], list[Job[Peer]], list[StoredJob], list[bytes]]:
        """The background jobs created and finished since the last call: (records to store, handles to remove,
        the created jobs whose JOB_CREATED waits for the write, dead letters to store, dead letters to remove).
        The driver writes them as one batch (removals first) and then calls ``written``."""
        jobs = self._added
        added = [
            StoredJob(job.handle, job.function.name, job.unique, job.workload, int(job.priority), job.when, job.reducer)
            for job in jobs
            if job.state is not _GONE
        ]
        removed = self._removed
        buried, unburied = self.dead.take_changes()
        self._added = []
        self._removed = []
        return added, removed, jobs, buried, unburied

    def written(self, jobs: list[Job[Peer]], failed: bool) -> None:
        """A batch from ``take_changes`` is safe (or lost, when ``failed``: its jobs are dropped and their
        submitters get ERROR QUEUE_ERROR); the peers whose held output may now be written go back on ``ready``."""
        for job in jobs:
            if not failed:
                job.written = _WRITTEN
            elif job.written is _PENDING:
                # Every submitter of a pending job has its JOB_CREATED held: each gets ERROR instead, and none
                # hears of the handle, so the job is dropped without WORK_FAIL.
                job.written = _FAILED
                self.finish(job)
        self.holding = holding = {peer for peer in self.holding if peer.held}
        self.ready.extend(holding)

    def acknowledge(self, peer: Peer, job: Job[Peer]) -> None:
        """Acknowledge a submission: JOB_CREATED now, or once the job is safe in the durable queue."""
        if job.written is _PENDING:
            peer.hold(job)
            self.holding.add(peer)
        else:
            peer.send(_JOB_CREATED, job.handle)

    def restore(self, stored: Iterable[StoredJob], now: float, dead: Iterable[StoredJob] = ()) -> int:
        """Re-create jobs (and dead letters) a durable store kept, with their old handles; returns how many jobs."""
        self.dead.restore(dead)
        for handle in self.dead:
            self.handles.skip_past(handle)
        count = 0
        for record in stored:
            self.handles.skip_past(record.handle)
            function = self.function(record.function)
            self._counted(function)
            job = Job(
                record.handle,
                function,
                record.unique,
                record.workload,
                priority=Priority(record.priority),
                background=True,
                reducer=record.reducer,
                when=record.when,
            )
            self.jobs[record.handle] = job
            self.queued_bytes += len(record.workload)
            key = unique_key(record.unique, record.workload)
            if key is not None:
                function.index_unique(key, job)
            if record.when > now:
                job.state = _DELAYED
                function.delayed += 1
                heapq.heappush(self._delayed, (record.when, next(self._seq), job))
            else:
                self._enqueue(job)
            count += 1
        return count
