"""The job board: every job, function, worker ability and sleeping worker of a job server, with no sockets.

How this works: each connection is a ``Peer`` whose ``out`` list collects encoded reply packets; the driver
(``connections``) feeds decoded packets to ``dispatch[type](peer, args)`` and writes each peer's ``out`` once per
event-loop turn. A ``Function`` holds three FIFO queues (high, normal, low), the peers registered for it and
those of them asleep. A job is DELAYED (epoch time in the future), QUEUED, RUNNING (held by one worker peer) or
GONE; finished, cancelled or abandoned jobs leave the handle and unique indexes at once and stay in a queue only as
tombstones that the next grab skips. A background job handed out ``job_retries`` times without a result is buried in
``dead`` (and the store's dead letters) until an admin requeues or purges it. Time never comes from a clock here: the
driver sets ``now`` before each batch and calls ``tick(now)`` when ``next_deadline()`` passes (epoch jobs due,
CAN_DO_TIMEOUT expiries).

Behaviour follows gearmand 1.1.20 (PROTOCOL.md §3) except where PROTOCOL.md §6/§7 says to fix it: CAN_DO_TIMEOUT
is in seconds and fails the job, cancelled and abandoned queued jobs leave the counts at once, a background job
joined by a foreground client survives that client, epoch jobs wake sleeping workers when they come due and never
block other jobs, every request that gets a reply in gearmand gets exactly one here.
"""

from __future__ import annotations

import heapq
import itertools
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from gearworks.protocol.codec import LARGE_PAYLOAD
from gearworks.protocol.fields import c_atoi, seconds
from gearworks.protocol.packets import RES, PacketType
from gearworks.server.jobs import MAX_UNIQUE, DeadJob, HandleFactory, Job, JobState, Priority, WriteState
from gearworks.server.queues.base import QueueStore, StoredJob
from gearworks.server.queues.memory import MemoryStore

__all__ = ["Board", "Function", "Peer", "Refused"]

_T = PacketType
# Reply types as plain ints: IntEnum attribute lookups and packing cost measurably per packet.
_ECHO_RES = int(PacketType.ECHO_RES)
_ERROR = int(PacketType.ERROR)
_JOB_ASSIGN = int(PacketType.JOB_ASSIGN)
_JOB_ASSIGN_ALL = int(PacketType.JOB_ASSIGN_ALL)
_JOB_ASSIGN_UNIQ = int(PacketType.JOB_ASSIGN_UNIQ)
_JOB_CREATED = int(PacketType.JOB_CREATED)
_NOOP = int(PacketType.NOOP)
_NO_JOB = int(PacketType.NO_JOB)
_OPTION_RES = int(PacketType.OPTION_RES)
_STATUS_RES = int(PacketType.STATUS_RES)
_STATUS_RES_UNIQUE = int(PacketType.STATUS_RES_UNIQUE)
_WORK_COMPLETE = int(PacketType.WORK_COMPLETE)
_WORK_EXCEPTION = int(PacketType.WORK_EXCEPTION)
_WORK_FAIL = int(PacketType.WORK_FAIL)
_WORK_STATUS = int(PacketType.WORK_STATUS)
_pack_header = struct.Struct(">4sII").pack
_HIGH, _NORMAL, _LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW
_QUEUED, _RUNNING, _DELAYED, _GONE = JobState.QUEUED, JobState.RUNNING, JobState.DELAYED, JobState.GONE
_WRITTEN, _PENDING, _FAILED = WriteState.WRITTEN, WriteState.PENDING, WriteState.FAILED
_ZERO = b"0"
_UNKNOWN_STATUS = b"\x000\x000\x000\x000"

MAX_CLIENT_ID = 127
"""SET_CLIENT_ID is stored truncated to 127 bytes, as gearmand does (PROTOCOL.md §1.4)."""
MAX_OPTION = 64
MAX_HANDLE = 64
"""gearmand's GEARMAND_JOB_HANDLE_SIZE: a WORK_FAIL handle this long is refused (PROTOCOL.md §1.4)."""
MAX_EPOCH = 2**63 - 1

_INVALID_COMMAND = b"INVALID_COMMAND\0Command not expected"
_NOT_FOUND_RESULT = b"JOB_NOT_FOUND\0Job given in work result not found"
_NOT_FOUND_DATA = b"JOB_NOT_FOUND\0Job does not exist on server"
_NOT_FOUND_EXCEPTION = b"JOB_NOT_FOUND\0An exception was received for a job that does not exist"
_HANDLE_TOO_LARGE = b"ARGUMENT_TOO_LARGE\0Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf"
_UNKNOWN_OPTION = b"UNKNOWN_OPTION\0Server does not recognize given option"
_QUEUE_WRITE_FAILED = b"QUEUE_ERROR\0The job could not be written to the persistent queue"


class Refused(Exception):
    """A submission the board turned down; ``body`` is the ERROR packet's ``code\\0text``."""

    def __init__(self, code: bytes, text: bytes) -> None:
        super().__init__(f"{code.decode()}: {text.decode()}")
        self.body = code + b"\0" + text


def _ignore(peer: Peer) -> None:
    """Default output hook: nothing to schedule (unit tests read ``out`` directly)."""


class Peer:
    """One connection's state: what it can do, whether it sleeps, jobs it holds and waits on, and its output.

    ``out`` holds encoded packets (and admin reply bytes) not yet written; ``notify(peer)`` is called when it goes
    from empty to non-empty so the driver can schedule one write for the loop turn.
    """

    __slots__ = (
        "abilities",
        "address",
        "client_id",
        "closing",
        "exceptions",
        "fd",
        "held",
        "host",
        "local",
        "noop_sent",
        "notify",
        "out",
        "running",
        "sleeping",
        "waiting",
    )

    def __init__(
        self,
        *,
        fd: int = -1,
        host: bytes = b"127.0.0.1",
        address: bytes = b"127.0.0.1:0",
        local: bool = True,
        notify: Callable[[Peer], None] = _ignore,
    ) -> None:
        self.fd = fd
        self.host = host
        self.address = address
        self.local = local
        self.notify = notify
        self.abilities: list[tuple[Function, float]] = []
        self.client_id = b"-"
        self.exceptions = False
        self.sleeping = False
        self.noop_sent = False
        self.closing = False
        self.running: set[Job] = set()
        self.waiting: dict[Job, None] = {}
        self.out: list[bytes | Job] = []
        self.held = 0

    def __repr__(self) -> str:
        return f"<Peer fd={self.fd} {self.address!r}>"

    def send(self, ptype: int, body: bytes) -> None:
        """Queue one response packet."""
        out = self.out
        if not out:
            self.notify(self)
        if len(body) < LARGE_PAYLOAD:
            out.append(_pack_header(RES, ptype, len(body)) + body)
        else:
            out.append(_pack_header(RES, ptype, len(body)))
            out.append(body)

    def send_with(self, ptype: int, head: bytes, payload: bytes) -> None:
        """Queue a packet whose body is ``head + payload`` without copying a large payload."""
        out = self.out
        if not out:
            self.notify(self)
        size = len(head) + len(payload)
        if len(payload) < LARGE_PAYLOAD:
            out.append(_pack_header(RES, ptype, size) + head + payload)
        else:
            out.append(_pack_header(RES, ptype, size) + head)
            out.append(payload)

    def send_text(self, data: bytes) -> None:
        """Queue an admin reply."""
        if not self.out:
            self.notify(self)
        self.out.append(data)

    def hold(self, job: Job) -> None:
        """Queue the JOB_CREATED of a job not yet safe in the durable queue: it and everything queued after it wait
        until the job's write is done (then JOB_CREATED) or failed (then ERROR QUEUE_ERROR)."""
        if not self.out:
            self.notify(self)
        self.out.append(job)
        self.held += 1

    def take_output(self) -> list[bytes]:
        """Everything that may be written now, in order; output behind a pending JOB_CREATED stays queued."""
        out = self.out
        if not self.held:
            self.out = []
            return out  # type: ignore[return-value]  # no Job markers when nothing is held
        ready: list[bytes] = []
        for index, item in enumerate(out):
            if isinstance(item, bytes):
                ready.append(item)
                continue
            if item.written is _PENDING:
                self.out = out[index:]
                return ready
            self.held -= 1
            if item.written is _FAILED:
                ready.append(_pack_header(RES, _T.ERROR, len(_QUEUE_WRITE_FAILED)) + _QUEUE_WRITE_FAILED)
            else:
                ready.append(_pack_header(RES, _T.JOB_CREATED, len(item.handle)) + item.handle)
        self.out = []
        return ready


class Function:
    """One function name: its queues, the peers registered for it and those asleep, its maxqueue caps.

    ``counts`` are live queued jobs per priority (tombstones excluded); ``delayed`` are epoch jobs not yet due,
    reported as queued normal jobs like gearmand does.
    """

    __slots__ = (
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
        self.queues: tuple[deque[Job], deque[Job], deque[Job]] = (deque(), deque(), deque())
        self.counts = [0, 0, 0]
        self.delayed = 0
        self.running = 0
        self.tombstones = 0
        self.workers: list[Peer] = []
        self.sleepers: dict[Peer, None] = {}
        self.uniques: dict[bytes, Job] = {}
        self.maxqueue: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"<Function {self.name!r}>"

    def sweep(self) -> None:
        """Drop the tombstones of cancelled and abandoned jobs from the queues (they would otherwise stay until a
        worker grabs past them, and a function nobody works on would keep them all)."""
        high, normal, low = (deque(job for job in queue if job.state is JobState.QUEUED) for queue in self.queues)
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


def _unique_key(unique: bytes, workload: bytes) -> bytes | None:
    """The coalescing key: none for an empty unique, the payload for ``-`` (PROTOCOL.md §3.3).

    A NUL cannot occur in a unique on the wire, so ``\\0`` + payload never collides with a real unique.
    """
    if not unique:
        return None
    if unique == b"-":
        return b"\0" + workload if workload else None
    return unique


Handler = Callable[[Peer, tuple[bytes, ...]], None]


class Board:
    """Jobs, functions and peers of one server, and the reaction to every request packet.

    Args:
        handles: makes job handles (default ``H:<hostname>:<n>``).
        store: where background jobs are persisted (default: memory, i.e. nowhere).
        job_retries: ``-j``: a job whose worker is lost this many times is failed, a background one buried as a
            dead letter (0 = never).
        round_robin: ``-R``: after a grab, the function served goes to the back of that worker's list.
        worker_wakeup: ``-w``: wake at most this many sleeping workers per queued job (0 = all).
        exceptions: ``--exceptions``: every new peer starts with the exceptions option on.
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
    ) -> None:
        self.handles = handles or HandleFactory()
        self.store: QueueStore = store or MemoryStore()
        self.job_retries = job_retries
        self.round_robin = round_robin
        self.worker_wakeup = worker_wakeup
        self.exceptions = exceptions
        self.now = 0.0
        self.functions: dict[bytes, Function] = {}
        self.jobs: dict[bytes, Job] = {}
        self.peers: dict[Peer, None] = {}
        self._delayed: list[tuple[float, int, Job]] = []
        self._timeouts: list[tuple[float, int, Job]] = []
        self._compact_at = 1024
        self._seq = itertools.count()
        self._collect = self.store.durable
        self._added: list[Job] = []
        self._removed: list[bytes] = []
        self._buried: dict[bytes, StoredJob] = {}
        self._unburied: list[bytes] = []
        self.dead: dict[bytes, DeadJob] = {}
        """Dead letters by handle, oldest first."""
        self.holding: set[Peer] = set()
        """Peers with a JOB_CREATED waiting for a durable write."""
        self.dispatch: dict[PacketType, Handler] = self._handlers()

    # -- peers ---------------------------------------------------------------------------------------------

    def connect(self, peer: Peer) -> Peer:
        """Register a new connection."""
        peer.exceptions = self.exceptions
        self.peers[peer] = None
        return peer

    def disconnect(self, peer: Peer) -> None:
        """Forget a connection: its jobs in hand are requeued, its waits detached (PROTOCOL.md §3.10, §3.11)."""
        if peer not in self.peers:
            return
        del self.peers[peer]
        self.holding.discard(peer)
        self._drop_abilities(peer, None)
        for job in list(peer.running):
            self._requeue(job)
        for job in peer.waiting:
            clients = job.clients
            if clients is None:
                continue
            job.clients = [client for client in clients if client is not peer] or None
            if job.clients is None and not job.background and job.state is not _RUNNING:
                self._finish(job)
        peer.waiting = {}

    # -- functions and abilities ---------------------------------------------------------------------------

    def function(self, name: bytes) -> Function:
        """The function called ``name``, created on first use (they are never removed implicitly, §3.2)."""
        function = self.functions.get(name)
        if function is None:
            function = self.functions[name] = Function(name)
        return function

    def can_do(self, peer: Peer, name: bytes, timeout: float = 0.0) -> None:
        """Register an ability; duplicates count twice, as in gearmand (PROTOCOL.md §3.8)."""
        function = self.function(name)
        peer.abilities.append((function, timeout))
        function.workers.append(peer)
        if peer.sleeping and not peer.noop_sent:
            function.sleepers[peer] = None

    def cant_do(self, peer: Peer, name: bytes | None) -> None:
        """Drop the registrations of ``name`` (all if None) and requeue the peer's jobs of those functions."""
        dropped = self._drop_abilities(peer, name)
        for job in list(peer.running):
            if job.function in dropped:
                self._requeue(job)

    def _drop_abilities(self, peer: Peer, name: bytes | None) -> set[Function]:
        dropped: set[Function] = set()
        kept: list[tuple[Function, float]] = []
        for ability in peer.abilities:
            function = ability[0]
            if name is None or function.name == name:
                dropped.add(function)
            else:
                kept.append(ability)
        peer.abilities = kept
        for function in dropped:
            function.workers = [worker for worker in function.workers if worker is not peer]
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
    ) -> Job:
        """Create a job, or attach to the live one with the same (function, unique) (PROTOCOL.md §3.3).

        Raises:
            Refused: unique or reducer over 64 bytes, or the function's maxqueue reached.
        """
        if len(unique) > MAX_UNIQUE or (reducer is not None and len(reducer) > MAX_UNIQUE):
            raise Refused(b"ARGUMENT_TOO_LARGE", b"Unique value too large")
        function = self.functions.get(name) or self.function(name)
        key = _unique_key(unique, workload)
        if key is not None:
            job = function.uniques.get(key)
            if job is not None:
                if client is not None:
                    self._attach(job, client)
                return job
        caps = function.maxqueue
        if caps is not None and caps[priority] and function.total >= caps[priority]:
            raise Refused(b"QUEUE_ERROR", b"Job queue is full")
        handle = self.handles()
        job = Job(
            handle, function, unique, workload, priority=priority, background=background, reducer=reducer, when=when
        )
        self.jobs[handle] = job
        if key is not None:
            function.uniques[key] = job
        if client is not None:
            self._attach(job, client)
        if background and self._collect:
            self._added.append(job)
            job.written = _PENDING
        if when > now:
            job.state = _DELAYED
            function.delayed += 1
            heapq.heappush(self._delayed, (when, next(self._seq), job))
        else:
            self._enqueue(job)
        return job

    def _attach(self, job: Job, client: Peer) -> None:
        if job.clients is None:
            job.clients = [client]
        else:
            job.clients.append(client)
        client.waiting[job] = None

    def _enqueue(self, job: Job) -> None:
        job.state = _QUEUED
        function = job.function
        function.queues[job.priority].append(job)
        function.counts[job.priority] += 1
        if function.sleepers:
            self._wake(function)

    def _wake(self, function: Function) -> None:
        """NOOP the sleeping workers of ``function`` (at most ``worker_wakeup``, oldest sleepers first)."""
        sleepers = function.sleepers
        limit = self.worker_wakeup
        woken = list(islice(sleepers, limit)) if limit else list(sleepers)
        for peer in woken:
            self._unsleep(peer)
            peer.noop_sent = True
            peer.send(_NOOP, b"")

    def _unsleep(self, peer: Peer) -> None:
        peer.sleeping = False
        for function, _ in peer.abilities:
            function.sleepers.pop(peer, None)

    # -- workers -------------------------------------------------------------------------------------------

    def runnable(self, peer: Peer) -> bool:
        """Whether a job is waiting that ``peer`` can do."""
        for function, _ in peer.abilities:
            counts = function.counts
            if counts[0] or counts[1] or counts[2]:
                return True
        return False

    def pre_sleep(self, peer: Peer) -> bool:
        """PRE_SLEEP: NOOP at once if work is waiting (returns True), else mark the peer asleep (§3.8)."""
        if self.runnable(peer):
            peer.send(_NOOP, b"")
            return True
        peer.sleeping = True
        peer.noop_sent = False
        for function, _ in peer.abilities:
            function.sleepers[peer] = None
        return False

    def grab(self, peer: Peer, now: float) -> Job | None:
        """Hand ``peer`` the next job: newest registration first, high before normal before low (§3.4)."""
        if peer.sleeping:
            self._unsleep(peer)
        peer.noop_sent = False
        abilities = peer.abilities
        for index in range(len(abilities) - 1, -1, -1):
            function, timeout = abilities[index]
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
                    if timeout:
                        job.deadline = deadline = now + timeout
                        self._push_timeout(deadline, job)
                    if self.round_robin:
                        abilities.insert(0, abilities.pop(index))
                    return job
        return None

    def _push_timeout(self, deadline: float, job: Job) -> None:
        """Remember a CAN_DO_TIMEOUT deadline; entries of jobs that ended stay until they expire, so the heap is
        compacted whenever it doubles, keeping it proportional to the jobs really running."""
        timeouts = self._timeouts
        heapq.heappush(timeouts, (deadline, next(self._seq), job))
        if len(timeouts) >= self._compact_at:
            live = [entry for entry in timeouts if entry[2].state is _RUNNING and entry[2].deadline == entry[0]]
            heapq.heapify(live)
            self._timeouts = live
            self._compact_at = max(1024, 2 * len(live))

    def held(self, peer: Peer, handle: bytes) -> Job | None:
        """The job ``handle`` if ``peer`` is the worker running it."""
        job = self.jobs.get(handle)
        if job is None or job.worker is not peer:
            return None
        return job

    def _requeue(self, job: Job) -> None:
        """Put a job its worker let go of back at the tail of its queue, or fail it after ``job_retries`` (burying
        a background one)."""
        job.retries += 1
        exhausted = self.job_retries and job.retries >= self.job_retries
        if exhausted or (not job.background and not job.clients):
            if exhausted and job.background:
                self._bury(job)
            self.fail(job)
            return
        worker = job.worker
        if worker is not None:
            worker.running.discard(job)
            job.worker = None
        job.function.running -= 1
        job.numerator = job.denominator = _ZERO
        self._enqueue(job)

    def _bury(self, job: Job) -> None:
        """Keep a background job out of the queues as a dead letter (gearmand drops it, PROTOCOL.md §3.10)."""
        dead = DeadJob(job.handle, job.function.name, job.unique, job.workload, job.priority, job.reducer, job.retries)
        self.dead[job.handle] = dead
        if self._collect:
            self._buried[job.handle] = StoredJob(
                dead.handle, dead.function, dead.unique, dead.workload, int(dead.priority), 0.0, dead.reducer,
                dead.retries,
            )  # fmt: skip

    def _dead_handles(self, handle: bytes | None) -> list[bytes]:
        """The dead letters an admin command names: one handle (none if unknown) or all (``None``)."""
        if handle is None:
            return list(self.dead)
        return [handle] if handle in self.dead else []

    def _unbury(self, handle: bytes) -> DeadJob:
        dead = self.dead.pop(handle)
        if self._collect:
            self._buried.pop(handle, None)
            self._unburied.append(handle)
        return dead

    def requeue_dead(self, handle: bytes | None) -> int:
        """Put dead letters (one, or all for ``None``) back at the tail of their queues with their handles and no
        retries, waking sleeping workers; returns how many."""
        handles = self._dead_handles(handle)
        for each in handles:
            dead = self._unbury(each)
            function = self.function(dead.function)
            job = Job(
                each, function, dead.unique, dead.workload, priority=dead.priority, background=True,
                reducer=dead.reducer,
            )  # fmt: skip
            self.jobs[each] = job
            key = _unique_key(dead.unique, dead.workload)
            if key is not None:
                function.uniques.setdefault(key, job)
            if self._collect:
                self._added.append(job)
            self._enqueue(job)
        return len(handles)

    def purge_dead(self, handle: bytes | None) -> int:
        """Forget dead letters (one, or all for ``None``); returns how many."""
        handles = self._dead_handles(handle)
        for each in handles:
            self._unbury(each)
        return len(handles)

    def fail(self, job: Job) -> None:
        """End a job with WORK_FAIL to every attached client (cancel, timeout, retries exhausted)."""
        for client in job.attached():
            client.send(_WORK_FAIL, job.handle)
        self._finish(job)

    def _finish(self, job: Job) -> None:
        """Remove a job from every index and count; a queued one stays behind as a tombstone."""
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
        key = _unique_key(job.unique, job.workload)
        if key is not None and function.uniques.get(key) is job:
            del function.uniques[key]
        if job.clients is not None:
            for client in job.clients:
                client.waiting.pop(job, None)
        if job.background and self._collect:
            self._removed.append(job.handle)

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: fail and forget the job; a worker's later results get JOB_NOT_FOUND (§6.1 #9)."""
        job = self.jobs.get(handle)
        if job is None:
            return False
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
                self.fail(job)

    # -- persistence ---------------------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """Whether durable changes wait for ``take_changes``."""
        return bool(self._added or self._removed or self._buried or self._unburied)

    def take_changes(self) -> tuple[list[StoredJob], list[bytes], list[Job], list[StoredJob], list[bytes]]:
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
        buried = list(self._buried.values())
        unburied = self._unburied
        self._added = []
        self._removed = []
        self._buried = {}
        self._unburied = []
        return added, removed, jobs, buried, unburied

    def written(self, jobs: list[Job], failed: bool) -> list[Peer]:
        """A batch from ``take_changes`` is safe (or lost, when ``failed``: its jobs are dropped and their
        submitters get ERROR QUEUE_ERROR). Returns the peers whose held output may now be written."""
        for job in jobs:
            if not failed:
                job.written = _WRITTEN
            elif job.written is _PENDING:
                # Every submitter of a pending job has its JOB_CREATED held: each gets ERROR instead, and none
                # hears of the handle, so the job is dropped without WORK_FAIL.
                job.written = _FAILED
                self._finish(job)
        self.holding = {peer for peer in self.holding if peer.held}
        return list(self.holding)

    def _created(self, peer: Peer, job: Job) -> None:
        """Acknowledge a submission: JOB_CREATED now, or once the job is safe in the durable queue."""
        if job.written is _PENDING:
            peer.hold(job)
            self.holding.add(peer)
        else:
            peer.send(_JOB_CREATED, job.handle)

    def restore(self, stored: Iterable[StoredJob], now: float, dead: Iterable[StoredJob] = ()) -> int:
        """Re-create jobs (and dead letters) a durable store kept, with their old handles; returns how many jobs."""
        for record in dead:
            self.handles.skip_past(record.handle)
            self.dead[record.handle] = DeadJob(
                record.handle, record.function, record.unique, record.workload, Priority(record.priority),
                record.reducer, record.retries,
            )  # fmt: skip
        count = 0
        for record in stored:
            self.handles.skip_past(record.handle)
            function = self.function(record.function)
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
            key = _unique_key(record.unique, record.workload)
            if key is not None:
                function.uniques[key] = job
            if record.when > now:
                job.state = _DELAYED
                function.delayed += 1
                heapq.heappush(self._delayed, (record.when, next(self._seq), job))
            else:
                self._enqueue(job)
            count += 1
        return count

    # -- queries -------------------------------------------------------------------------------------------

    def status_of(self, handle: bytes) -> bytes:
        """STATUS_RES body for ``handle`` (truncated at a NUL like gearmand, §1.3)."""
        nul = handle.find(b"\0")
        if nul >= 0:
            handle = handle[:nul]
        job = self.jobs.get(handle)
        if job is None:
            return handle + _UNKNOWN_STATUS
        running = b"1" if job.state is _RUNNING else _ZERO
        return b"\0".join((handle, b"1", running, job.numerator, job.denominator))

    def job_by_unique(self, unique: bytes) -> Job | None:
        """The most recently created live job with this unique, whatever its function (§3.6)."""
        if not unique:
            return None
        found: Job | None = None
        newest = -1
        for function in self.functions.values():
            job = function.uniques.get(unique)
            if job is not None:
                number = _handle_number(job.handle)
                if number > newest:
                    found, newest = job, number
        return found

    def status_of_unique(self, unique: bytes) -> bytes:
        """STATUS_RES_UNIQUE body: unique, known, running, numerator, denominator, attached clients."""
        job = self.job_by_unique(unique)
        if job is None:
            return unique + _UNKNOWN_STATUS + b"\x000"
        running = b"1" if job.state is _RUNNING else _ZERO
        clients = str(len(job.clients or ())).encode()
        return b"\0".join((unique, b"1", running, job.numerator, job.denominator, clients))

    def live_jobs(self) -> Iterator[Job]:
        """Every job not finished, in creation order."""
        return iter(self.jobs.values())

    # -- packets -------------------------------------------------------------------------------------------

    def _handlers(self) -> dict[PacketType, Handler]:
        table: dict[PacketType, Handler] = {
            _T.CAN_DO: self._on_can_do,
            _T.CANT_DO: self._on_cant_do,
            _T.RESET_ABILITIES: self._on_reset_abilities,
            _T.PRE_SLEEP: self._on_pre_sleep,
            _T.SUBMIT_JOB: self._submitter(_NORMAL, False),
            _T.SUBMIT_JOB_BG: self._submitter(_NORMAL, True),
            _T.SUBMIT_JOB_HIGH: self._submitter(_HIGH, False),
            _T.SUBMIT_JOB_HIGH_BG: self._submitter(_HIGH, True),
            _T.SUBMIT_JOB_LOW: self._submitter(_LOW, False),
            _T.SUBMIT_JOB_LOW_BG: self._submitter(_LOW, True),
            _T.SUBMIT_JOB_EPOCH: self._on_submit_epoch,
            _T.SUBMIT_REDUCE_JOB: self._reduce_submitter(False),
            _T.SUBMIT_REDUCE_JOB_BACKGROUND: self._reduce_submitter(True),
            _T.GRAB_JOB: self._on_grab_job,
            _T.GRAB_JOB_UNIQ: self._on_grab_job_uniq,
            _T.GRAB_JOB_ALL: self._on_grab_job_all,
            _T.WORK_STATUS: self._on_work_status,
            _T.WORK_COMPLETE: self._on_work_complete,
            _T.WORK_FAIL: self._on_work_fail,
            _T.WORK_EXCEPTION: self._on_work_exception,
            _T.WORK_DATA: self._forwarder(_T.WORK_DATA),
            _T.WORK_WARNING: self._forwarder(_T.WORK_WARNING),
            _T.GET_STATUS: self._on_get_status,
            _T.GET_STATUS_UNIQUE: self._on_get_status_unique,
            _T.ECHO_REQ: self._on_echo,
            _T.SET_CLIENT_ID: self._on_set_client_id,
            _T.CAN_DO_TIMEOUT: self._on_can_do_timeout,
            _T.OPTION_REQ: self._on_option,
        }
        # RES-only types, the never-implemented ALL_YOURS and UNUSED, and cron-style SUBMIT_JOB_SCHED (§2).
        for ptype in PacketType:
            table.setdefault(ptype, self._on_unexpected)
        return table

    def _on_unexpected(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.send(_ERROR, _INVALID_COMMAND)

    def _on_can_do(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.can_do(peer, args[0])

    def _on_can_do_timeout(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.can_do(peer, args[0], seconds(args[1]))

    def _on_cant_do(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.cant_do(peer, args[0])

    def _on_reset_abilities(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.cant_do(peer, None)

    def _on_pre_sleep(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.pre_sleep(peer)

    def _on_set_client_id(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.client_id = args[0][:MAX_CLIENT_ID]

    def _on_echo(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.send(_ECHO_RES, args[0])

    def _on_option(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        option = args[0]
        if len(option) < MAX_OPTION and option.split(b"\0", 1)[0].lower() == b"exceptions":
            peer.exceptions = True
            peer.send(_OPTION_RES, option)
        else:
            peer.send(_ERROR, _UNKNOWN_OPTION)

    def _submitter(self, priority: Priority, background: bool) -> Handler:
        def on_submit(peer: Peer, args: tuple[bytes, ...]) -> None:
            try:
                job = self.submit(
                    args[0], args[1], args[2], priority=priority, background=background,
                    client=None if background else peer,
                )  # fmt: skip
            except Refused as refused:
                peer.send(_ERROR, refused.body)
                return
            self._created(peer, job)

        return on_submit

    def _reduce_submitter(self, background: bool) -> Handler:
        def on_submit(peer: Peer, args: tuple[bytes, ...]) -> None:
            name, unique, reducer, _aggregator, workload = args
            try:
                job = self.submit(
                    name, unique, workload, background=background, reducer=reducer,
                    client=None if background else peer,
                )  # fmt: skip
            except Refused as refused:
                peer.send(_ERROR, refused.body)
                return
            self._created(peer, job)

        return on_submit

    def _on_submit_epoch(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, epoch, workload = args
        when = c_atoi(epoch)
        try:
            if not -MAX_EPOCH <= when <= MAX_EPOCH:
                raise Refused(b"ARGUMENT_TOO_LARGE", b"Epoch time out of range")
            job = self.submit(name, unique, workload, background=True, when=float(when), now=self.now)
        except Refused as refused:
            peer.send(_ERROR, refused.body)
            return
        self._created(peer, job)

    def _on_grab_job(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = self.grab(peer, self.now)
        if job is None:
            peer.send(_NO_JOB, b"")
            return
        peer.send_with(_JOB_ASSIGN, job.handle + b"\0" + job.function.name + b"\0", job.workload)

    def _on_grab_job_uniq(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = self.grab(peer, self.now)
        if job is None:
            peer.send(_NO_JOB, b"")
            return
        head = b"\0".join((job.handle, job.function.name, job.unique, b""))
        peer.send_with(_JOB_ASSIGN_UNIQ, head, job.workload)

    def _on_grab_job_all(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = self.grab(peer, self.now)
        if job is None:
            peer.send(_NO_JOB, b"")
        elif job.reducer is None:
            # gearmand answers GRAB_JOB_ALL with JOB_ASSIGN_UNIQ unless the job has a reducer (§6.1 #1).
            head = b"\0".join((job.handle, job.function.name, job.unique, b""))
            peer.send_with(_JOB_ASSIGN_UNIQ, head, job.workload)
        else:
            head = b"\0".join((job.handle, job.function.name, job.unique, job.reducer, b""))
            peer.send_with(_JOB_ASSIGN_ALL, head, job.workload)

    def _on_work_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle, numerator, denominator = args
        job = self.held(peer, handle)
        if job is None:
            peer.send(_ERROR, _NOT_FOUND_RESULT)
            return
        # gearmand stores atoi() of each field but forwards the raw text (PROTOCOL.md §3.6).
        job.numerator = str(c_atoi(numerator)).encode()
        job.denominator = str(c_atoi(denominator)).encode()
        if job.clients:
            body = b"\0".join(args)
            for client in job.attached():
                client.send(_WORK_STATUS, body)

    def _on_work_complete(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle, result = args
        job = self.held(peer, handle)
        if job is None:
            peer.send(_ERROR, _NOT_FOUND_RESULT)
            return
        if job.clients:
            head = handle + b"\0"
            for client in job.attached():
                client.send_with(_WORK_COMPLETE, head, result)
        self._finish(job)

    def _on_work_fail(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle = args[0]
        if len(handle) >= MAX_HANDLE:
            peer.send(_ERROR, _HANDLE_TOO_LARGE)
            return
        job = self.held(peer, handle)
        if job is None:
            peer.send(_ERROR, _NOT_FOUND_RESULT)
            return
        self.fail(job)

    def _on_work_exception(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle, data = args
        job = self.held(peer, handle)
        if job is None:
            peer.send(_ERROR, _NOT_FOUND_EXCEPTION)
            return
        head = handle + b"\0"
        for client in job.attached():
            if client.exceptions:
                client.send_with(_WORK_EXCEPTION, head, data)
            else:
                # gearmand sends `handle\0` here; the bare handle is what clients match (PROTOCOL.md §6.1 #3).
                client.send(_WORK_FAIL, handle)
        self._finish(job)

    def _forwarder(self, ptype: PacketType) -> Handler:
        code = int(ptype)

        def on_work(peer: Peer, args: tuple[bytes, ...]) -> None:
            handle, data = args
            job = self.held(peer, handle)
            if job is None:
                peer.send(_ERROR, _NOT_FOUND_DATA)
                return
            if job.clients:
                head = handle + b"\0"
                for client in job.attached():
                    client.send_with(code, head, data)

        return on_work

    def _on_get_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.send(_STATUS_RES, self.status_of(args[0]))

    def _on_get_status_unique(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.send(_STATUS_RES_UNIQUE, self.status_of_unique(args[0]))


def _handle_number(handle: bytes) -> int:
    tail = handle.rpartition(b":")[2]
    return int(tail) if tail.isdigit() else 0
