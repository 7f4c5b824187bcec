"""The client state machine shared by AsyncClient and Client: jobs in flight, handle → job, events, retries,
options and status replies. No sockets, no threads, no clock: drivers feed bytes and connection events in, pass
``now``, and after each call take ``take_ready()``: the channels that got bytes to write or need connecting (the
outbox contract of every core, ``protocol/outbox.py``). A CONNECTED one gets its ``take_out()`` written; for any
other, ``start_connecting`` says whether to open its connection now.

How this works: every server has a Channel. A request (a job's SUBMIT_*, ECHO_REQ, GET_STATUS, OPTION_REQ) is
appended to the channel's ``pending`` FIFO and its bytes to ``out``. gearmand answers each of them exactly once,
in order (PROTOCOL.md §2.1), so a JOB_CREATED, ERROR, ECHO_RES, STATUS_RES or OPTION_RES always belongs to the
head of ``pending``; anything else is a protocol error. JOB_CREATED moves a foreground job to ``handles``, where
WORK_* packets find it. Foreground jobs with the same (function, unique) on one channel are coalesced here, before
the server sees them (one SUBMIT, one group of jobs sharing the handle): gearmand would otherwise attach the
connection twice and send it every WORK_* packet twice. When a connection is lost, requests never written are
routed again for free; jobs already sent use one of their ``retry_count`` resubmissions or fail.

Timers (a job's timeout, its next retry) live in one heap of ``_Timer`` entries. A job that ends clears its
entries, so the heap never keeps a finished job's workload or result until its timeout; cleared entries are
dropped when they come due, or all at once when they outnumber the live ones (as the server's board does).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import operator
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from enum import Enum
from typing import Any, Unpack, cast

from gearworks.client.jobs import (
    Call,
    Callbacks,
    CompleteEvent,
    CreatedEvent,
    DataEvent,
    Event,
    ExceptionEvent,
    FailEvent,
    Job,
    JobHandle,
    JobStatus,
    Priority,
    RetryEvent,
    StatusEvent,
    SubmitOptions,
    UniqueStatus,
    WarningEvent,
)
from gearworks.client.routing import Router
from gearworks.codecs import BytesCodec, Codec, codec_or_default
from gearworks.connection import ConnectionKeywords, RequestKeywords, ServerAddress, connect_options
from gearworks.errors import (
    ClientClosed,
    ConnectionLost,
    GearworksError,
    JobException,
    JobFailed,
    JobTimeout,
    NoServerAvailable,
    ProtocolError,
    ServerError,
)
from gearworks.protocol import (
    DEFAULT_MAX_PACKET_SIZE,
    Decoder,
    Packet,
    PacketType,
    encode,
    encode_parts,
    encode_submissions,
)
from gearworks.protocol.fields import as_bytes, c_atoi
from gearworks.protocol.outbox import Outbox, take_ready

__all__ = ["BaseClient", "Channel", "ChannelState", "ClientOptions", "ClientSession"]

log = logging.getLogger("gearworks.client")

_T = PacketType
_SUBMIT_TYPES: dict[tuple[str, bool], PacketType] = {
    ("normal", False): _T.SUBMIT_JOB,
    ("high", False): _T.SUBMIT_JOB_HIGH,
    ("low", False): _T.SUBMIT_JOB_LOW,
    ("normal", True): _T.SUBMIT_JOB_BG,
    ("high", True): _T.SUBMIT_JOB_HIGH_BG,
    ("low", True): _T.SUBMIT_JOB_LOW_BG,
}
_CALLBACKS = frozenset(
    (
        "on_created",
        "on_data",
        "on_warning",
        "on_status",
        "on_exception",
        "on_complete",
        "on_fail",
        "on_retry",
    )
)

Pending = Job | Call[Any]
_UNIQUE = operator.attrgetter("unique")
_WORKLOAD = operator.attrgetter("workload")
Handler = Callable[["Channel", tuple[bytes, ...], float], None]

_COMPACT_MIN = 64
"""Cleared timers tolerated in the heap before it is compacted (once they also outnumber the live ones)."""
_MAX_RETRY_DOUBLINGS = 32
"""Cap of the retry delay's exponent: ``2 ** attempts`` would overflow a float near 1,024 attempts."""


class _Timer:
    """A heap entry: ``job``'s timeout, or (``resubmit``) its next retry; ``job`` is None once cleared."""

    __slots__ = ("job", "resubmit")

    def __init__(self, job: Job, resubmit: bool) -> None:
        self.job: Job | None = job
        self.resubmit = resubmit


class ChannelState(Enum):
    """Where one server's connection is. Every move is made by one ClientSession method:

    ============  ==========  ===================================================
    from          to          by
    ============  ==========  ===================================================
    IDLE          CONNECTING  ``start_connecting`` (the driver opens a connection)
    CONNECTING    CONNECTED   ``connected``
    CONNECTING    IDLE        ``connect_failed``
    CONNECTED     IDLE        ``lost`` (also from ``expire``: a silent server)
    any           IDLE        ``close``, and dropped with the channel
    ============  ==========  ===================================================
    """

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"


class Channel(Outbox[bytes]):
    """The session's view of one server connection: requests waiting for replies, bytes to write, handles."""

    __slots__ = ("address", "coalesce", "decoder", "handle", "handles", "pending", "since", "state", "unsent")

    def __init__(self, address: ServerAddress, max_packet_size: int, ready: list[Channel]) -> None:
        super().__init__(ready)
        self.address = address
        self.handle = JobHandle.of(address)
        """Makes this server's JobHandles from the bytes of a JOB_CREATED."""
        self.state = ChannelState.IDLE
        self.decoder = Decoder(max_packet_size=max_packet_size)
        self.pending: deque[Pending] = deque()
        self.unsent = 0  # the last ``unsent`` entries of pending are still in ``out``
        self.handles: dict[bytes, list[Job]] = {}
        self.coalesce: dict[tuple[bytes, bytes], list[Job]] = {}
        self.since = 0.0  # last reply received, or when ``pending`` stopped being empty

    def take_out(self) -> list[bytes]:
        """The bytes to write now; the requests they carry count as sent."""
        self.unsent = 0
        return super().take_out()

    def _reset(self, max_packet_size: int) -> tuple[list[Pending], int, list[list[Job]]]:
        pending, unsent, groups = list(self.pending), self.unsent, list(self.handles.values())
        self.state = ChannelState.IDLE
        self.decoder = Decoder(max_packet_size=max_packet_size)
        self.discard()
        self.pending = deque()
        self.unsent = 0
        self.handles = {}
        self.coalesce = {}
        return pending, unsent, groups

    def __repr__(self) -> str:
        return f"<Channel {self.address} {self.state.value} pending={len(self.pending)}>"


class ClientSession:
    """All client logic that is not I/O.

    Args:
        router: the servers and how to pick one.
        exceptions: send ``OPTION_REQ exceptions`` first on every connection (to receive WORK_EXCEPTION).
        command_timeout: seconds a server may stay silent while a request waits for its reply; the channel is then
            treated as lost. None: wait forever.
        max_packet_size: larger submissions raise ValueError before anything is sent.
        codec: encodes workloads and decodes results and WORK_DATA (None: bytes in, bytes out).
        retry_delay, retry_delay_max: seconds before a job's first resubmission (``retry_count``), doubling per
            attempt up to the cap; 0 resubmits at once.
    """

    def __init__(
        self,
        router: Router,
        *,
        exceptions: bool = False,
        command_timeout: float | None = 30.0,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        codec: Codec | None = None,
        retry_delay: float = 0.1,
        retry_delay_max: float = 10.0,
    ) -> None:
        self.router = router
        self.command_timeout = command_timeout
        self.max_packet_size = max_packet_size
        self.codec = codec_or_default(codec)
        self._decode: Callable[[bytes], Any] | None = None if isinstance(self.codec, BytesCodec) else self.codec.decode
        self.retry_delay = retry_delay
        self.retry_delay_max = retry_delay_max
        self.options: list[bytes] = [b"exceptions"] if exceptions else []
        self.channels: dict[ServerAddress, Channel] = {}
        self.ready: list[Channel] = []
        """Channels with bytes to write or a connection to open (``take_ready``)."""
        self.closed: GearworksError | None = None
        self._timers: list[tuple[float, int, _Timer]] = []
        self._job_timers: dict[Job, list[_Timer]] = {}
        self._cleared_timers = 0
        self._seq = itertools.count()
        self._option_waiters: dict[bytes, Call[None]] = {}
        self._unique_prefix = uuid.uuid4().hex.encode()
        self._unique_counter = itertools.count(1)
        self._last_channel: Channel | None = None
        self._handlers: dict[PacketType, Handler] = {
            _T.JOB_CREATED: self._on_job_created,
            _T.ERROR: self._on_error,
            _T.ECHO_RES: lambda channel, args, now: self._on_call_reply(channel, _T.ECHO_RES, args),
            _T.STATUS_RES: lambda channel, args, now: self._on_call_reply(channel, _T.STATUS_RES, args),
            _T.STATUS_RES_UNIQUE: lambda channel, args, now: self._on_call_reply(channel, _T.STATUS_RES_UNIQUE, args),
            _T.OPTION_RES: lambda channel, args, now: self._on_call_reply(channel, _T.OPTION_RES, args),
            _T.WORK_COMPLETE: self._on_work_complete,
            _T.WORK_FAIL: self._on_work_fail,
            _T.WORK_EXCEPTION: self._on_work_exception,
            _T.WORK_DATA: self._on_work_data,
            _T.WORK_WARNING: self._on_work_warning,
            _T.WORK_STATUS: self._on_work_status,
            _T.NOOP: self._ignore,
        }

    # ----------------------------------------------------------------------------------------------- requests

    def new_job(
        self,
        function: str | bytes,
        workload: object,
        *,
        background: bool = False,
        when: float | None = None,
        options: SubmitOptions,
    ) -> Job:
        """Build (and encode) a job without sending it.

        Raises:
            ValueError: a bad priority, a NUL in the function name or unique key, a priority with ``when``, or a
                packet over ``max_packet_size``.
            TypeError: a workload the codec cannot encode (without a codec: not bytes-like or str).
        """
        name = self.router.function(function)
        payload = self.codec.encode(workload)
        unique_option = options.get("unique")
        if unique_option is not None:
            unique = as_bytes(unique_option, "unique")
        elif background or when is not None:
            # A unique of its own keeps a persistent server from squashing background jobs (Gearman::Client #87):
            # a random 128-bit session prefix and a counter, unique like a UUID and cheaper per job.
            unique = b"%s-%d" % (self._unique_prefix, next(self._unique_counter))
        else:
            unique = b""
        priority: Priority = options.get("priority", "normal")
        if when is not None:
            if priority != "normal":
                raise ValueError("epoch jobs (when=...) always run at normal priority")
            background = True
            # Whole seconds on the wire: rounded up, so the job never runs before ``when``.
            epoch = str(math.ceil(when)).encode()
            packet = encode_parts(_T.SUBMIT_JOB_EPOCH, (name, unique, epoch, payload), max_size=self.max_packet_size)
        else:
            ptype = _SUBMIT_TYPES.get((priority, background))
            if ptype is None:
                raise ValueError(f"priority must be 'normal', 'high' or 'low', not {priority!r}")
            packet = encode_parts(ptype, (name, unique, payload), max_size=self.max_packet_size)
        callbacks = None
        if not _CALLBACKS.isdisjoint(options) and any(options.get(key) for key in _CALLBACKS):
            callbacks = Callbacks(**{key: options.get(key) for key in _CALLBACKS})  # type: ignore[arg-type]
        job = Job(
            name,
            payload,
            unique,
            priority=priority,
            background=background,
            retry_count=options.get("retry_count", 0),
            callbacks=callbacks,
        )
        job.packet = packet
        if not background and unique:
            # Unique "-" coalesces on identical workloads (PROTOCOL.md §3.3).
            job.key = (name, b"-" + payload if unique == b"-" else unique)
        timeout = options.get("timeout")
        if timeout is not None:
            job.deadline = timeout  # made absolute by submit()
        return job

    def new_jobs(
        self, function: str | bytes, workloads: Iterable[object], *, background: bool = False, options: SubmitOptions
    ) -> list[Job]:
        """Build many jobs of one function with the same options, as ``new_job`` would one by one (each workload
        encoded by the codec, each background job with a unique key of its own), checking everything first: an
        error raises before any job is made. Their packets are encoded later, together, by ``submit_many``.

        Raises:
            ValueError, TypeError: as ``new_job``, for the first workload at fault.
        """
        name = self.router.function(function)
        encode_workload = self.codec.encode
        payloads = [encode_workload(workload) for workload in workloads]
        priority: Priority = options.get("priority", "normal")
        ptype = _SUBMIT_TYPES.get((priority, background))
        if ptype is None:
            raise ValueError(f"priority must be 'normal', 'high' or 'low', not {priority!r}")
        unique_option = options.get("unique")
        fixed = as_bytes(unique_option, "unique") if unique_option is not None else None
        for value, what in ((name, "function"), (fixed or b"", "unique")):
            if b"\0" in value:
                raise ValueError(f"{ptype.name} argument {what!r} must not contain a NUL byte")
        callbacks = None
        if not _CALLBACKS.isdisjoint(options) and any(options.get(key) for key in _CALLBACKS):
            callbacks = Callbacks(**{key: options.get(key) for key in _CALLBACKS})  # type: ignore[arg-type]
        retry_count = options.get("retry_count", 0)
        timeout = options.get("timeout")
        limit = self.max_packet_size - len(name) - 2
        if fixed is not None:
            uniques: Iterable[bytes] = itertools.repeat(fixed, len(payloads))
        elif background:
            prefix, counter = self._unique_prefix, self._unique_counter
            uniques = [b"%s-%d" % (prefix, next(counter)) for _ in payloads]
        else:
            uniques = itertools.repeat(b"", len(payloads))
        jobs: list[Job] = []
        append = jobs.append
        for unique, payload in zip(uniques, payloads, strict=True):
            if len(unique) + len(payload) > limit:
                size = len(name) + 2 + len(unique) + len(payload)
                raise ValueError(
                    f"{ptype.name} body of {size} bytes exceeds the {self.max_packet_size}-byte packet limit"
                )
            job = Job(
                name,
                payload,
                unique,
                priority=priority,
                background=background,
                retry_count=retry_count,
                callbacks=callbacks,
            )
            if not background and unique:
                job.key = (name, b"-" + payload if unique == b"-" else unique)
            job.deadline = timeout
            append(job)
        return jobs

    def submit_many(self, jobs: list[Job], now: float) -> None:
        """Route and queue jobs made by one ``new_jobs`` call, as ``submit`` would one by one (unique keys route
        by hash, others round-robin), but with one encoding pass and one pending extension per server.

        Raises:
            NoServerAvailable: a job has no server to go to; then none of them is queued (jobs with unique keys
                that may coalesce, foreground, are queued one by one: those before it are).
            ClientClosed: the client is closed.
        """
        self._check_open()
        if not jobs:
            return
        if jobs[0].key is not None:
            # Foreground jobs with unique keys may coalesce with each other and with jobs in flight: one at a time.
            for job in jobs:
                self.submit(job, now)
            return
        router = self.router
        if len(router.servers) == 1:
            routes = {router.pick(now): jobs}
        else:
            routes = {}
            for job in jobs:
                routes.setdefault(router.pick(now, job.unique or None), []).append(job)
        if jobs[0].deadline is not None:
            for job in jobs:
                if job.deadline is not None:
                    job.deadline += now
                    self._add_timer(job, job.deadline, resubmit=False)
        for address, batch in routes.items():
            self._queue_many(self._channel(address), batch, now)

    def submit(self, job: Job, now: float) -> None:
        """Route ``job`` to a server and queue its submission.

        Raises:
            NoServerAvailable: every server is down or backing off.
            ClientClosed: the client is closed.
        """
        self._check_open()
        if job.deadline is not None and job.attempts == 0 and not job.events:
            job.deadline += now
            self._add_timer(job, job.deadline, resubmit=False)
        self._route(job, now)

    def _route(self, job: Job, now: float) -> None:
        channel = self._channel(self.router.pick(now, job.unique or None))
        job.server = channel.address
        if job.key is not None:
            group = channel.coalesce.get(job.key)
            if group:
                group.append(job)
                job.group = group
                handle = group[0].handle
                if handle is not None:
                    job.handle = handle
                    job._emit(CreatedEvent(handle))
                return
            channel.coalesce[job.key] = job.group
        self._queue(channel, job, job.packet or self._packet(job), now)

    def _packet(self, job: Job) -> list[bytes]:
        """The submission of a job from a batch (sent in its batch's buffer), encoded again to submit it anew."""
        ptype = _SUBMIT_TYPES[(job.priority, job.background)]
        job.packet = encode_parts(ptype, (job.function, job.unique, job.workload), max_size=self.max_packet_size)
        return job.packet

    def _queue_many(self, channel: Channel, jobs: list[Job], now: float) -> None:
        """``_queue`` for jobs of one function and one submission type, their packets encoded into one buffer."""
        first = jobs[0]
        address = channel.address
        for job in jobs:
            job.server = address
        if not channel.pending:
            channel.since = now
        channel.pending.extend(jobs)
        ptype = _SUBMIT_TYPES[(first.priority, first.background)]
        chunks = encode_submissions(
            ptype, first.function, zip(map(_UNIQUE, jobs), map(_WORKLOAD, jobs), strict=True), self.max_packet_size
        )
        channel.push_all(chunks)
        channel.unsent += len(jobs)

    def echo(self, data: bytes, now: float) -> Call[bytes]:
        """ECHO_REQ to one server; the reply is the same bytes."""
        self._check_open()
        channel = self._channel(self.router.pick(now))
        call: Call[bytes] = Call(_T.ECHO_RES, channel.address)
        self._queue(channel, call, [encode(_T.ECHO_REQ, (data,), max_size=self.max_packet_size)], now)
        return call

    def get_status(self, handle: bytes, now: float) -> Call[JobStatus]:
        """GET_STATUS to the server that issued ``handle`` (a JobHandle), else to every server: the first that
        knows the job answers."""
        self._check_open()
        server = handle.server if isinstance(handle, JobHandle) else None
        addresses = [server] if server is not None else self._reachable(now)
        call: Call[JobStatus] = Call(_T.STATUS_RES, server, remaining=len(addresses))
        packet = [encode(_T.GET_STATUS, (bytes(handle),))]
        for address in addresses:
            self._queue(self._channel(address), call, packet, now)
        return call

    def get_status_unique(self, unique: bytes, now: float) -> Call[UniqueStatus]:
        """GET_STATUS_UNIQUE to the server that jobs with this unique key are routed to."""
        self._check_open()
        channel = self._channel(self.router.pick(now, unique or None))
        call: Call[UniqueStatus] = Call(_T.STATUS_RES_UNIQUE, channel.address)
        self._queue(channel, call, [encode(_T.GET_STATUS_UNIQUE, (unique,))], now)
        return call

    def option(self, name: bytes, now: float) -> Call[None]:
        """Set a server option on every connection, now and after each reconnect (OPTION_REQ)."""
        self._check_open()
        if name not in self.options:
            self.options.append(name)
        connected = [channel for channel in self.channels.values() if channel.state is ChannelState.CONNECTED]
        call: Call[None] = Call(_T.OPTION_RES, remaining=max(1, len(connected)), name=name)
        if connected:
            packet = [encode(_T.OPTION_REQ, (name,))]
            for channel in connected:
                self._queue(channel, call, packet, now)
        else:
            # Sent (with this call as its reply) as the first packet once a connection is made.
            self._option_waiters[name] = call
            self._mark(self._channel(self.router.pick(now)))
        return call

    def fail(self, job: Job, error: GearworksError) -> None:
        """Give up on ``job`` (a wait timed out, the client closes): it fails with ``error``."""
        if not job.done:
            self._fail(job, error)

    # ------------------------------------------------------------------------------------- connection events

    def take_ready(self) -> list[Channel]:
        """Channels that got bytes to write or need connecting since the last call, in that order."""
        return take_ready(self.ready)

    def start_connecting(self, channel: Channel) -> bool:
        """Whether the driver should open ``channel``'s connection now: it is idle and the client open. If so, it is
        CONNECTING until ``connected`` or ``connect_failed``."""
        if channel.state is not ChannelState.IDLE or self.closed is not None:
            return False
        channel.state = ChannelState.CONNECTING
        return True

    def connected(self, channel: Channel, now: float) -> None:
        """The connection is up: options go first (libgearman does the same, PROTOCOL.md §6.2)."""
        channel.state = ChannelState.CONNECTED
        self.router.succeeded(channel.address)
        if self.options:
            calls: list[Pending] = []
            packets: list[bytes] = []
            for name in self.options:
                waiter = self._option_waiters.pop(name, None)
                calls.append(waiter if waiter is not None else Call(_T.OPTION_RES, channel.address, name=name))
                packets.append(encode(_T.OPTION_REQ, (name,)))
            channel.pending.extendleft(reversed(calls))
            channel.out[:0] = packets
            channel.unsent = len(channel.pending)
        channel.since = now
        self._mark(channel)

    def connect_failed(self, channel: Channel, error: ConnectionLost, now: float) -> None:
        """Connecting failed: back off that server and route what was waiting for it elsewhere."""
        self.router.failed(channel.address, now)
        pending, _, _ = channel._reset(self.max_packet_size)
        for name, call in list(self._option_waiters.items()):
            del self._option_waiters[name]
            call._reject(error)
        for entry in pending:
            self._reroute(entry, error, now)

    def lost(self, channel: Channel, error: GearworksError, now: float) -> None:
        """An established connection is gone: route unsent requests again, retry or fail the rest."""
        if channel.state is ChannelState.IDLE:
            return
        pending, unsent, groups = channel._reset(self.max_packet_size)
        cut = len(pending) - unsent
        for entry in pending[:cut]:
            if isinstance(entry, Job):
                for job in list(entry.group):
                    self._retry(job, self._lost_error(job, channel, error), now)
            else:
                entry._reject(self._lost_error(None, channel, error))
        for entry in pending[cut:]:
            self._reroute(entry, error, now)
        for group in groups:
            for job in list(group):
                self._retry(job, self._lost_error(job, channel, error), now)

    @staticmethod
    def _lost_error(job: Job | None, channel: Channel, error: GearworksError) -> GearworksError:
        if isinstance(error, ProtocolError):
            return error
        what = f" with job {job.handle or job.function!r} pending" if job is not None else ""
        lost = ConnectionLost(f"connection to {channel.address} lost{what}: {error}")
        lost.__cause__ = error
        return lost

    def receive(self, channel: Channel, data: bytes, now: float) -> None:
        """Bytes from ``channel``'s server.

        Raises:
            ProtocolError: malformed bytes or a reply nobody asked for; the driver must drop the connection.
        """
        channel.since = now
        handlers = self._handlers
        for packet in channel.decoder.feed(data):
            assert isinstance(packet, Packet)
            handler = handlers.get(packet.type)
            if handler is None:
                raise ProtocolError(f"unexpected {packet.type.name} from {channel.address}")
            handler(channel, packet.args, now)

    def next_deadline(self) -> float | None:
        """When ``expire`` should next be called (None: nothing times out)."""
        deadline = self._timers[0][0] if self._timers else None
        if self.command_timeout is not None:
            for channel in self.channels.values():
                if channel.pending and channel.state is ChannelState.CONNECTED:
                    expiry = channel.since + self.command_timeout
                    if deadline is None or expiry < deadline:
                        deadline = expiry
        return deadline

    def expire(self, now: float) -> list[Channel]:
        """Fail jobs past their timeout, resubmit jobs whose retry delay is over; treat channels silent past the
        command timeout as lost and return them, so the driver closes their connections."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            job = timer.job
            if job is None:
                self._cleared_timers -= 1
                continue
            remaining = self._job_timers[job]
            remaining.remove(timer)
            if not remaining:
                del self._job_timers[job]
            if timer.resubmit:
                self._resubmit(job, now)
            else:
                self._fail(job, JobTimeout(f"job {job.function!r} timed out", handle=job.handle, function=job.function))
        silent: list[Channel] = []
        if self.command_timeout is not None:
            for channel in list(self.channels.values()):
                if (
                    channel.pending
                    and channel.state is ChannelState.CONNECTED
                    and now >= channel.since + self.command_timeout
                ):
                    error = ConnectionLost(f"no reply from {channel.address} within {self.command_timeout}s")
                    self.lost(channel, error, now)
                    silent.append(channel)
        return silent

    def close(self, error: GearworksError) -> list[Channel]:
        """Fail everything pending with ``error``; returns the channels whose connections must be closed."""
        self.closed = error
        channels = list(self.channels.values())
        for channel in channels:
            pending, _, groups = channel._reset(self.max_packet_size)
            for entry in pending:
                if isinstance(entry, Call):
                    if not entry.done:
                        entry._reject(error)
                    continue
                for job in list(entry.group):
                    self._fail(job, error)
            for group in groups:
                for job in list(group):
                    self._fail(job, error)
        for call in self._option_waiters.values():
            call._reject(error)
        self._option_waiters.clear()
        for _, _, timer in list(self._timers):
            if timer.job is not None and timer.resubmit:
                self._fail(timer.job, error)  # waiting for its retry delay
        self.channels.clear()
        self._last_channel = None
        self.ready.clear()
        return channels

    def reopen(self, now: float) -> None:
        """Accept requests again after ``close``, and list every server not in its backoff as ready to connect."""
        self.closed = None
        for address in self.router.servers:
            channel = self._channel(address)
            if channel.state is ChannelState.IDLE and self.router.backoffs[address].available(now):
                self._mark(channel)

    def replace_servers(self, servers: str | ServerAddress | Iterable[str | ServerAddress] | None) -> list[Channel]:
        """Use a new server list. Returns idle channels of removed servers (to close); busy ones finish first."""
        idle: list[Channel] = []
        for address in self.router.replace(servers):
            channel = self.channels.get(address)
            if channel is not None and not channel.pending and not channel.handles:
                del self.channels[address]
                idle.append(channel)
        self._last_channel = None
        return idle

    @property
    def pending_count(self) -> int:
        """Requests sent or queued that wait for their reply (JOB_CREATED, status, echo, option)."""
        return sum(len(channel.pending) for channel in self.channels.values())

    @property
    def active_count(self) -> int:
        """Foreground jobs created on a server and not finished."""
        return sum(len(group) for channel in self.channels.values() for group in channel.handles.values())

    # ------------------------------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self.closed is not None:
            raise ClientClosed("the client is closed; connect() opens it again")

    def _channel(self, address: ServerAddress) -> Channel:
        channel = self._last_channel
        if channel is not None and channel.address is address:
            return channel  # the common case, without hashing the address (reset when channels are removed)
        channel = self.channels.get(address)
        if channel is None:
            channel = self.channels[address] = Channel(address, self.max_packet_size, self.ready)
        self._last_channel = channel
        return channel

    def _reachable(self, now: float) -> list[ServerAddress]:
        addresses = [address for address in self.router.servers if self.router.backoffs[address].available(now)]
        return addresses or [self.router.pick(now)]

    def _mark(self, channel: Channel) -> None:
        """List ``channel`` as ready without pushing to it (to connect it, or after prepending to its ``out``). A push
        in the same round may list it twice; the driver's second look finds nothing to do."""
        if channel not in self.ready:
            self.ready.append(channel)

    def _queue(self, channel: Channel, entry: Pending, packet: list[bytes], now: float) -> None:
        if not channel.pending:
            channel.since = now
        channel.pending.append(entry)
        channel.push_all(packet)
        channel.unsent += 1

    def _reroute(self, entry: Pending, error: GearworksError, now: float) -> None:
        """Submit again a request that never reached its server (not a retry)."""
        if isinstance(entry, Call):
            if not entry.done:
                entry._reject(error)
            return
        for job in list(entry.group):
            if job.done:
                continue
            job.group = [job]
            try:
                self._route(job, now)
            except NoServerAvailable as exc:
                self._fail(job, NoServerAvailable(f"{exc}; last error: {error}"))
            except GearworksError as exc:
                self._fail(job, exc)

    def _retry(self, job: Job, reason: GearworksError, now: float) -> None:
        if job.done:
            return
        if job.attempts >= job.retry_count or self.closed is not None:
            self._fail(job, reason)
            return
        self._detach(job)
        job.attempts += 1
        job.handle = None
        job.group = [job]
        job._emit(RetryEvent(job.attempts, reason))
        delay = min(self.retry_delay * 2 ** min(job.attempts - 1, _MAX_RETRY_DOUBLINGS), self.retry_delay_max)
        if delay > 0:
            self._add_timer(job, now + delay, resubmit=True)
        else:
            self._resubmit(job, now)

    def _resubmit(self, job: Job, now: float) -> None:
        try:
            self._route(job, now)
        except GearworksError as exc:
            self._fail(job, exc)

    def _add_timer(self, job: Job, at: float, *, resubmit: bool) -> None:
        timer = _Timer(job, resubmit)
        heapq.heappush(self._timers, (at, next(self._seq), timer))
        self._job_timers.setdefault(job, []).append(timer)

    def _clear_timers(self, job: Job) -> None:
        """Let go of a finished job: its timers stay in the heap, empty, until due or compacted."""
        timers = self._job_timers.pop(job, None)
        if timers is None:
            return
        for timer in timers:
            timer.job = None
        self._cleared_timers += len(timers)
        heap = self._timers
        if self._cleared_timers > _COMPACT_MIN and self._cleared_timers * 2 > len(heap):
            heap[:] = [entry for entry in heap if entry[2].job is not None]
            heapq.heapify(heap)
            self._cleared_timers = 0

    def _detach(self, job: Job) -> None:
        group = job.group
        if job in group:
            group.remove(job)
        if not group and job.server is not None:
            channel = self.channels.get(job.server)
            if channel is not None:
                if job.handle is not None and channel.handles.get(job.handle) is group:
                    del channel.handles[job.handle]
                if job.key is not None and channel.coalesce.get(job.key) is group:
                    del channel.coalesce[job.key]

    def _finish(self, job: Job, event: Event) -> None:
        self._detach(job)
        if self._job_timers:
            self._clear_timers(job)
        job._emit(event)

    def _fail(self, job: Job, error: GearworksError) -> None:
        self._finish(job, FailEvent(error))
        job._reject(error)

    def _head(self, channel: Channel, reply: PacketType) -> Pending:
        if not channel.pending:
            raise ProtocolError(f"{reply.name} from {channel.address} answers no request")
        entry = channel.pending.popleft()
        expected = _T.JOB_CREATED if isinstance(entry, Job) else entry.expect
        if reply is not _T.ERROR and reply is not expected:
            raise ProtocolError(f"{reply.name} from {channel.address} where {expected.name} was due")
        return entry

    # ------------------------------------------------------------------------------------------- handlers

    def _ignore(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        """NOOP: meant for workers; harmless here."""

    def _on_job_created(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        job = self._head(channel, _T.JOB_CREATED)
        assert isinstance(job, Job)
        group = job.group
        if not group:
            return  # every job of this submission gave up (timeout) before the server answered
        handle = channel.handle(args[0])
        if job.background:
            # Done once created, like the seeds' clients: on_created only, no on_complete before any worker ran it.
            # A background job is never coalesced nor in ``handles``: ``_finish`` without its look-ups.
            group.clear()
            if self._job_timers:
                self._clear_timers(job)
            job._created(handle)
            return
        known = channel.handles.get(handle)
        if known is not None and known is not group:
            known.extend(group)  # the server coalesced two of our submissions we could not see as one
            for member in group:
                member.group = known
        else:
            channel.handles[handle] = group
        for member in list(group):
            member.handle = handle
            member._emit(CreatedEvent(handle))

    def _on_error(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        entry = self._head(channel, _T.ERROR)
        error = ServerError(args[0].decode(errors="replace"), args[1].decode(errors="replace"), str(channel.address))
        if isinstance(entry, Job):
            for job in list(entry.group):
                self._fail(job, error)
        elif entry.expect is _T.OPTION_RES:
            log.warning("%s refused option %r: %s", channel.address, entry.name, error)
            # gearmand says UNKNOWN_OPTION, the Perl Gearman::Server unknown_option: not re-sent on reconnects.
            if error.code.upper() == "UNKNOWN_OPTION" and entry.name in self.options:
                self.options.remove(entry.name)
            if not entry.done:
                entry._reject(error)
        elif not entry.done:
            entry._reject(error)

    def _on_call_reply(self, channel: Channel, reply: PacketType, args: tuple[bytes, ...]) -> None:
        call = self._head(channel, reply)
        assert isinstance(call, Call)
        call.remaining -= 1
        if call.done:
            return
        if call.expect is _T.ECHO_RES:
            call._resolve(args[0])
        elif call.expect is _T.STATUS_RES:
            status = JobStatus(args[0], args[1] == b"1", args[2] == b"1", c_atoi(args[3]), c_atoi(args[4]))
            if status.known or call.remaining <= 0:
                call._resolve(status)
        elif call.expect is _T.STATUS_RES_UNIQUE:
            known, running = args[1] == b"1", args[2] == b"1"
            call._resolve(UniqueStatus(args[0], known, running, *(c_atoi(x) for x in args[3:6])))
        elif call.remaining <= 0:
            call._resolve(None)

    def _group(self, channel: Channel, handle: bytes) -> list[Job]:
        group = channel.handles.get(handle)
        if group is None:
            log.debug("%s sent work for unknown handle %r", channel.address, handle)
            return []
        return list(group)

    def _decoded(self, group: list[Job], data: bytes) -> tuple[Any, bool]:
        """``data`` decoded by the codec, and whether that worked; if not, the group's jobs fail with JobFailed."""
        decode = self._decode
        if decode is None:
            return data, True
        try:
            return decode(data), True
        except Exception as exc:
            for job in group:
                error = JobFailed(
                    f"job {job.handle!r} ({job.function!r}): {self.codec!r} cannot decode {data[:200]!r}: {exc}",
                    handle=job.handle,
                    function=job.function,
                )
                error.__cause__ = exc
                self._fail(job, error)
            return None, False

    def _on_work_complete(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        group = self._group(channel, args[0])
        result, ok = self._decoded(group, args[1])
        if ok:
            for job in group:
                self._finish(job, CompleteEvent(result))
                job._resolve(result)

    def _on_work_fail(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        # gearmand turns WORK_EXCEPTION into WORK_FAIL "handle\0" for clients without the option (§3.7).
        handle = args[0].rstrip(b"\0")
        for job in self._group(channel, handle):
            message = f"job {handle!r} ({job.function!r}) failed"
            self._retry(job, JobFailed(message, handle=handle, function=job.function), now)

    def _on_work_exception(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        handle, data = args
        for job in self._group(channel, handle):
            job._emit(ExceptionEvent(data))
            message = f"job {handle!r} ({job.function!r}) raised: {data[:200]!r}"
            self._retry(job, JobException(message, data, handle=handle, function=job.function), now)

    def _on_work_data(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        group = self._group(channel, args[0])
        data, ok = self._decoded(group, args[1])
        if ok:
            for job in group:
                job._emit(DataEvent(data))

    def _on_work_warning(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        for job in self._group(channel, args[0]):
            job._emit(WarningEvent(args[1]))

    def _on_work_status(self, channel: Channel, args: tuple[bytes, ...], now: float) -> None:
        numerator, denominator = c_atoi(args[1]), c_atoi(args[2])
        for job in self._group(channel, args[0]):
            job.status = (numerator, denominator)
            job._emit(StatusEvent(numerator, denominator))


class ClientOptions(RequestKeywords, total=False):
    """Keyword options of both clients' constructors: the connection keywords (``RequestKeywords``, including
    ``command_timeout`` [30.0]), and (defaults in brackets):

    prefix: namespace for function names (prefix + TAB + name), as Gearman::Client [None].
    exceptions: ask every server for WORK_EXCEPTION packets (OPTION_REQ, re-sent after each reconnect) [False].
    backoff_initial, backoff_maximum: reconnect delay in seconds after a failed attempt, doubling per failure up to
        the cap, where a down server keeps being retried however long it is down [0.1, 30.0]; backoff_max: failed
        attempts after which a server is disabled for good [None: never].
    retry_delay, retry_delay_max: seconds before a failed job's first resubmission (``retry_count``), doubling per
        attempt up to the cap [0.1, 10.0]; 0 resubmits at once. A job's ``timeout`` keeps running meanwhile.
    codec: turns workloads into bytes and result and WORK_DATA payloads back into objects: ``JSONCodec()`` or any
        object with ``encode(obj) -> bytes`` and ``decode(bytes) -> obj`` [None: bytes in (``str`` as UTF-8, any
        other type a TypeError), bytes out]. Warnings, exception payloads and handles stay bytes; a payload the
        codec cannot decode fails the job with JobFailed.
    write_buffer_limit: bytes a client may hold unwritten (server not reading) before a submission waits
        (``Client``) or raises BufferError (``AsyncClient``'s synchronous ``submit``) [64 MiB].

    A submission over ``max_packet_size`` raises ValueError before anything is sent.
    """

    prefix: str | bytes | None
    exceptions: bool
    backoff_initial: float
    backoff_maximum: float
    backoff_max: int | None
    retry_delay: float
    retry_delay_max: float
    codec: Codec | None
    write_buffer_limit: int


WRITE_BUFFER_LIMIT = 64 * 1024 * 1024
"""Default ``write_buffer_limit``: unwritten bytes a client holds before it stops taking submissions."""


class BaseClient:
    """What AsyncClient and Client share: configuration, submission, server list and counters.

    Drivers implement ``_now`` (their clock), ``_flush`` (write queued bytes now), ``_queued`` (bytes were
    queued by a task set: write now or batch), ``_make_room`` (before a submission: wait for, or refuse, when more
    than ``write_buffer_limit`` bytes are unwritten) and ``_close_channels``. ``_lock`` guards the session: a
    no-op for the asyncio driver, a reentrant lock for the threaded one.
    """

    _lock: AbstractContextManager[object] = nullcontext()

    def __init__(
        self,
        servers: str | ServerAddress | Iterable[str | ServerAddress] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.connect_options = connect_options(options, ClientOptions, type(self).__name__)
        connection = {key: value for key, value in options.items() if key in ConnectionKeywords.__optional_keys__}
        self._connection = cast(ConnectionKeywords, connection)
        """The connection keywords as given, for the admin clients of ``get_job_server_*``, with the TLS context
        built once."""
        self._connection["ssl_context"] = self.connect_options.tls
        router = Router(
            servers,
            prefix=options.get("prefix"),
            backoff_initial=options.get("backoff_initial", 0.1),
            backoff_maximum=options.get("backoff_maximum", 30.0),
            backoff_max=options.get("backoff_max"),
        )
        self._session = ClientSession(
            router,
            exceptions=options.get("exceptions", False),
            command_timeout=options.get("command_timeout", 30.0),
            max_packet_size=self.connect_options.max_packet_size,
            codec=options.get("codec"),
            retry_delay=options.get("retry_delay", 0.1),
            retry_delay_max=options.get("retry_delay_max", 10.0),
        )
        self.write_buffer_limit = options.get("write_buffer_limit", WRITE_BUFFER_LIMIT)

    def _now(self) -> float:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _queued(self) -> None:
        raise NotImplementedError

    def _make_room(self) -> None:
        raise NotImplementedError

    def _close_channels(self, channels: list[Channel]) -> None:
        raise NotImplementedError

    def submit(
        self,
        function: str | bytes,
        workload: object = b"",
        *,
        background: bool = False,
        when: float | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Job:
        """Submit a job and return it at once (foreground: its result comes later; background: its handle).

        ``when`` (seconds since the epoch) makes a background job not run before then (SUBMIT_JOB_EPOCH; sent in
        whole seconds, rounded up).

        Raises:
            ValueError: bad arguments or a packet over the size limit (nothing is sent).
            TypeError: a workload that is not bytes-like or str (or that the codec cannot encode).
            NoServerAvailable: every server is down or backing off.
            ClientClosed: the client was closed (``connect()`` opens it again).
        """
        with self._lock:
            job = self._session.new_job(function, workload, background=background, when=when, options=options)
            self._make_room()
            self._session.submit(job, self._now())
            self._flush()
            return job

    def submit_many(
        self,
        function: str | bytes,
        workloads: Iterable[object],
        *,
        background: bool = False,
        **options: Unpack[SubmitOptions],
    ) -> list[Job]:
        """Submit one job per workload, all of ``function`` with the same options, and return them at once, in
        order: as ``submit`` in a loop, but encoded into one buffer per server and written together.

        Raises:
            ValueError, TypeError: as ``submit``, for any workload; nothing is sent then.
            NoServerAvailable: every server is down or backing off.
            ClientClosed: the client was closed (``connect()`` opens it again).
        """
        with self._lock:
            jobs = self._session.new_jobs(function, workloads, background=background, options=options)
            self._make_room()
            self._session.submit_many(jobs, self._now())
            self._flush()
            return jobs

    @staticmethod
    def _handles(jobs: list[Job]) -> list[JobHandle]:
        """The handles of done background jobs, in order; the first failed job's error if any failed."""
        for job in jobs:
            if job.error is not None:
                raise job.error
        return [cast(JobHandle, job.handle) for job in jobs]

    def _enqueue(self, function: str | bytes, workload: object, **options: Unpack[SubmitOptions]) -> Job:
        with self._lock:
            job = self._session.new_job(function, workload, options=options)
            self._make_room()
            self._session.submit(job, self._now())
            self._queued()
            return job

    @property
    def servers(self) -> list[ServerAddress]:
        """The job servers in use."""
        return list(self._session.router.servers)

    def set_servers(self, servers: str | ServerAddress | Iterable[str | ServerAddress] | None) -> None:
        """Replace the server list at run time; jobs in flight on removed servers still finish."""
        with self._lock:
            self._close_channels(self._session.replace_servers(servers))

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (and ``connect()`` not since)."""
        return self._session.closed is not None

    @property
    def prefix(self) -> bytes:
        """The function-name namespace (with its TAB), or b""."""
        return self._session.router.prefix

    @property
    def pending_count(self) -> int:
        """Requests waiting for their reply from a server (submissions before JOB_CREATED, status, echo)."""
        with self._lock:
            return self._session.pending_count

    @property
    def active_count(self) -> int:
        """Foreground jobs created and not finished."""
        with self._lock:
            return self._session.active_count

    def _abandon(self, jobs: Iterable[Job]) -> None:
        """Fail the jobs of a wait that timed out with JobTimeout."""
        for job in jobs:
            if not job.done:
                message = f"gave up waiting for job {job.handle or job.function!r}"
                self._session.fail(job, JobTimeout(message, handle=job.handle, function=job.function))
