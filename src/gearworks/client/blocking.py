"""Client: the blocking front-end. Each call queues its request in the ClientSession, then pumps the sockets
(a selector over every connection) until what it waits for is done.

How threads share one Client: a reentrant lock guards the session and the sockets. A thread that must wait
becomes the pump if nobody is: it releases the lock only while it sleeps in ``select`` (``_selecting``), then
takes it again to read, write and dispatch, and wakes every waiting thread (one condition) after each round.
The other threads sleep on that condition and find their own job done; the first one whose job is not done takes
the pump over when the pump's own job is done. While a thread is in ``select`` nobody else touches a socket: a
submission queues its bytes and wakes the pump through a socket pair, which writes them; closing, connecting and
replacing servers wait for the pump to step aside (``_sockets``). Writes never block: what a socket does not take
waits for writability in the same ``select``, so every call keeps its deadline.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack, cast

from gearworks.admin import Admin, ClientInfo, FunctionStatus, QueuedJob, Rows, WorkerInfo
from gearworks.client.jobs import Call, Job, JobHandle, JobStatus, SubmitOptions, TaskSet, UniqueStatus
from gearworks.client.session import BaseClient, Channel, ChannelState, ClientOptions
from gearworks.connection import ServerAddress
from gearworks.connection.blocking import BlockingConnection
from gearworks.errors import ConnectionLost, GearworksError, ProtocolError

__all__ = ["BlockingTaskSet", "Client"]

T = TypeVar("T")
R = TypeVar("R")

_BATCH = 2048
"""A task set writes once this many jobs are queued (reading what came back first), not one write per task."""
_LOOK_EVERY = 0.01
"""Seconds after the last look at the sockets when a write looks again first (for a connection the server closed
meanwhile, and for replies to read): a tight loop of ``submit`` calls looks every 10 ms, not before every write
(the zero-timeout select cost about 40 % of a background submission)."""


class BlockingTaskSet(TaskSet):
    """A task set of a blocking Client: ``add`` jobs, then ``wait(timeout)``."""

    _client: Client

    def wait(self, timeout: float | None = None) -> list[Job]:
        """Send the queued jobs and wait until every one is done; after ``timeout`` seconds the rest fail with
        JobTimeout."""
        return self._client.wait(self.jobs, timeout)


class Client(BaseClient):
    """Blocking Gearman client; the same methods as AsyncClient, without ``await``.

    Thread-safe: one Client (one connection per server) may be used from many threads at once; calls interleave
    on the connection and each caller gets its own result. Callbacks run in whichever thread is reading the
    sockets at the time, holding the client's lock: keep them short.

    Args:
        servers: ``"host:port"``, ``"host"`` (port 4730), a Unix socket path, a list of them, or a comma-separated
            string; None reads ``$GEARMAN_SERVERS`` (default 127.0.0.1:4730).
        options: see ClientOptions: the connection keywords (``connect_timeout`` [5.0], ``command_timeout``
            [30.0], TLS, keepalive, packet limit) and prefix, exceptions, backoff, retry delays, codec,
            ``write_buffer_limit`` (past it a submission waits until the servers have read enough).
    """

    def __init__(
        self,
        servers: str | ServerAddress | Iterable[str | ServerAddress] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(servers, **options)
        self._rlock = threading.RLock()
        self._lock = self._rlock
        self._turn = threading.Condition(self._rlock)
        """Notified after every pump round, and when a thread gives the sockets back."""
        self._selecting = False
        self._wanting = 0  # threads waiting for the pump to step aside (``_sockets``)
        self._connections: dict[Channel, BlockingConnection] = {}
        self._unsent: dict[Channel, list[bytes | memoryview]] = {}
        self._unsent_bytes = 0
        self._queued_jobs = 0
        self._looked_at = 0.0  # when the sockets were last selected on (``_LOOK_EVERY``)
        self._selector: selectors.BaseSelector | None = None  # made with the first connection
        self._wake_pair: tuple[socket.socket, socket.socket] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --------------------------------------------------------------------------------------------- public API

    def do(self, function: str | bytes, workload: object = b"", **options: Unpack[SubmitOptions]) -> Any:
        """Run a foreground job and return its result (bytes, or what the codec decodes).

        Raises:
            JobFailed, JobException, JobTimeout, ConnectionLost, ServerError: the job did not complete.
            TypeError: a workload that is not bytes-like or str (without a codec).
            ClientClosed: the client was closed.
        """
        job = self.submit(function, workload, **options)
        with self._lock:
            self._pump(lambda: job.done)
        return job.result()

    do_task = do

    def submit_background(
        self,
        function: str | bytes,
        workload: object = b"",
        *,
        when: float | None = None,
        **options: Unpack[SubmitOptions],
    ) -> JobHandle:
        """Queue a background job (not run before ``when``, epoch seconds, if given) and return its handle once
        created."""
        job = self.submit(function, workload, background=True, when=when, **options)
        with self._lock:
            self._pump(lambda: job.done)
        return cast(JobHandle, job.result())

    def submit_background_many(
        self, function: str | bytes, workloads: Iterable[object], **options: Unpack[SubmitOptions]
    ) -> list[JobHandle]:
        """Queue one background job per workload (``submit_many``) and return their handles, in order, once every
        one is created.

        Raises:
            ValueError, TypeError: bad arguments or workloads (nothing is sent).
            ServerError, ConnectionLost, JobTimeout: the first job in order that failed (the others are created
                or failed too by then); ``submit_many(..., background=True)`` gives each job's own outcome.
        """
        return self._handles(self.wait(self.submit_many(function, workloads, background=True, **options)))

    def task_set(self) -> BlockingTaskSet:
        """A new, empty task set."""
        return BlockingTaskSet(self)

    def wait(self, jobs: Iterable[Job], timeout: float | None = None) -> list[Job]:
        """Wait until every job is done (whatever the outcome); after ``timeout`` seconds the rest fail with
        JobTimeout. Returns the jobs."""
        jobs = list(jobs)
        remaining = iter(jobs)
        current: list[Job | None] = [next(remaining, None)]

        def all_done() -> bool:
            while current[0] is not None and current[0].done:
                current[0] = next(remaining, None)
            return current[0] is None

        with self._lock:
            if not self._pump(all_done, timeout):
                self._abandon(jobs)
        return jobs

    def get_status(self, handle: bytes) -> JobStatus:
        """Ask the server that issued ``handle`` (or every server, for plain bytes) about a job."""
        with self._lock:
            return self._call(self._session.get_status(handle, self._now()))

    def get_status_unique(self, unique: bytes | str) -> UniqueStatus:
        """Ask the server that jobs with this unique key go to about the newest such job."""
        key = unique.encode() if isinstance(unique, str) else unique
        with self._lock:
            return self._call(self._session.get_status_unique(key, self._now()))

    def echo(self, data: bytes = b"") -> bytes:
        """Round-trip ``data`` through a server (ECHO_REQ)."""
        with self._lock:
            return self._call(self._session.echo(data, self._now()))

    def option(self, name: str | bytes = "exceptions") -> None:
        """Set a server option on every connection, now and after each reconnect.

        Raises:
            ServerError: the server does not know the option.
        """
        with self._lock:
            self._call(self._session.option(name.encode() if isinstance(name, str) else name, self._now()))

    def get_job_server_status(self) -> dict[ServerAddress, Rows[FunctionStatus]]:
        """Per server: each function's jobs (queued + running), running jobs and capable workers (admin ``status``)."""
        return self._each_server(Admin.status)

    def get_job_server_workers(self) -> dict[ServerAddress, Rows[WorkerInfo]]:
        """Per server: every connection with its client id and functions (admin ``workers``)."""
        return self._each_server(Admin.workers)

    def get_job_server_jobs(self) -> dict[ServerAddress, Rows[QueuedJob]]:
        """Per server: its jobs (admin ``jobs``: the Perl Gearman::Server and gearworks; gearmand raises
        ServerError)."""
        return self._each_server(Admin.jobs)

    def get_job_server_clients(self) -> dict[ServerAddress, Rows[ClientInfo]]:
        """Per server: client connections and the jobs they wait on (admin ``clients``, as ``jobs``)."""
        return self._each_server(Admin.clients)

    def _each_server(self, query: Callable[[Admin], R]) -> dict[ServerAddress, R]:
        timeout = self._session.command_timeout or 30.0
        results: dict[ServerAddress, R] = {}
        for address in self.servers:
            with Admin(address, command_timeout=timeout, **self._connection) as admin:
                results[address] = query(admin)
        return results

    def connect(self) -> None:
        """Open a connection to every server not in its backoff now (otherwise they open on first use); a closed
        client is usable again. A server that cannot be reached backs off, as on first use."""
        with self._sockets():
            self._session.reopen(self._now())
            self._flush()

    def set_servers(self, servers: str | ServerAddress | Iterable[str | ServerAddress] | None) -> None:
        """Replace the server list at run time; jobs in flight on removed servers still finish."""
        with self._sockets():
            super().set_servers(servers)

    def close(self) -> None:
        """Fail every pending job with ConnectionLost and close every connection; using the client afterwards
        raises ClientClosed until ``connect()``."""
        with self._sockets():
            self._close_channels(self._session.close(ConnectionLost("the client was closed")))
            if self._selector is not None and self._wake_pair is not None:
                self._selector.close()
                for end in self._wake_pair:
                    end.close()
                self._selector = self._wake_pair = None

    # ------------------------------------------------------------------------------------------------ driver

    def _open_selector(self) -> selectors.BaseSelector:
        """The selector, made on first need with a socket pair in it that other threads write to to wake the pump."""
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._wake_pair = socket.socketpair()
            for end in self._wake_pair:
                end.setblocking(False)
            self._selector.register(self._wake_pair[0], selectors.EVENT_READ, None)
        return self._selector

    @contextlib.contextmanager
    def _sockets(self) -> Iterator[None]:
        """Hold the lock while no other thread is in ``select``, for what changes connections."""
        with self._lock:
            self._wanting += 1
            try:
                while self._selecting:
                    self._wake()
                    self._turn.wait()
            finally:
                self._wanting -= 1
            try:
                yield
            finally:
                self._turn.notify_all()

    def _wake(self) -> None:
        if self._wake_pair is not None:
            with contextlib.suppress(OSError):  # the pair's buffer is full: a wake-up is already pending
                self._wake_pair[1].send(b"\0")

    def _call(self, call: Call[T]) -> T:
        self._pump(lambda: call.done)
        return call.result()

    def _now(self) -> float:
        return time.monotonic()

    def _flush(self) -> None:
        self._queued_jobs = 0
        if self._selecting:
            self._wake()  # the thread in select writes it, and sees any new deadline
            return
        if self._connections and self._now() - self._looked_at >= _LOOK_EVERY:
            self._round(0.0)  # notice a connection the server closed while we were idle, before writing to it
        session = self._session
        while session.ready:
            for channel in session.take_ready():
                if channel.state is ChannelState.CONNECTED:
                    self._send(channel)
                elif session.start_connecting(channel):
                    self._connect(channel)

    def _queued(self) -> None:
        self._queued_jobs += 1
        if self._queued_jobs >= _BATCH:
            self._flush()

    def _make_room(self) -> None:
        limit = self.write_buffer_limit
        if self._unsent_bytes > limit:
            self._pump(lambda: self._unsent_bytes <= limit)

    def _connect(self, channel: Channel) -> None:
        session = self._session
        try:
            connection = BlockingConnection.connect(channel.address, self.connect_options)
        except ConnectionLost as exc:
            session.connect_failed(channel, exc, self._now())
            return
        self._connections[channel] = connection
        self._open_selector().register(connection.sock, selectors.EVENT_READ, channel)
        session.connected(channel, self._now())

    def _send(self, channel: Channel) -> None:
        """Write what the socket takes of ``channel``'s bytes; the rest waits for EVENT_WRITE."""
        connection = self._connections.get(channel)
        if connection is None:
            return
        backlog = self._unsent.pop(channel, None)
        chunks: list[bytes | memoryview] = [*channel.take_out()]
        if backlog is not None:
            self._unsent_bytes -= sum(map(len, backlog))
            chunks[:0] = backlog
        try:
            rest = connection.write_some(chunks)
        except ConnectionLost as exc:
            self._drop(channel, exc)
            return
        if rest:
            self._unsent[channel] = rest
            self._unsent_bytes += sum(map(len, rest))
        if bool(rest) != (backlog is not None):
            assert self._selector is not None
            events = selectors.EVENT_READ | selectors.EVENT_WRITE if rest else selectors.EVENT_READ
            self._selector.modify(connection.sock, events, channel)

    def _drop(self, channel: Channel, error: GearworksError) -> None:
        self._close_channels([channel])
        self._session.lost(channel, error, self._now())

    def _close_channels(self, channels: list[Channel]) -> None:
        for channel in channels:
            backlog = self._unsent.pop(channel, None)
            if backlog is not None:
                self._unsent_bytes -= sum(map(len, backlog))
            connection = self._connections.pop(channel, None)
            if connection is not None:
                assert self._selector is not None
                self._selector.unregister(connection.sock)
                connection.close()

    def _round(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for any socket (releasing the lock meanwhile, unless 0), then write what
        the writable ones take and hand what the readable ones hold to the session."""
        selector = self._selector
        assert selector is not None
        connections = self._connections
        # TLS may hold decrypted bytes the socket no longer shows as readable.
        ready = [
            (selector.get_key(c.sock), selectors.EVENT_READ)
            for c in connections.values()
            if isinstance(c.sock, ssl.SSLSocket) and c.sock.pending()
        ]
        if not ready:
            if timeout == 0:
                ready = selector.select(0)
            else:
                self._selecting = True
                self._rlock.release()
                try:
                    ready = selector.select(timeout)
                finally:
                    self._rlock.acquire()
                    self._selecting = False
        self._looked_at = self._now()
        for key, events in ready:
            channel = key.data
            if channel is None:
                self._drain_wakes()
                continue
            if events & selectors.EVENT_WRITE:
                self._send(channel)
            if events & selectors.EVENT_READ:
                self._receive(channel)

    def _drain_wakes(self) -> None:
        assert self._wake_pair is not None
        with contextlib.suppress(BlockingIOError):
            while self._wake_pair[0].recv(4096):
                pass

    def _receive(self, channel: Channel) -> None:
        connection = self._connections.get(channel)
        if connection is None:
            return
        try:
            data = connection.recv(None)
            if data:
                self._session.receive(channel, data, self._now())
        except (ConnectionLost, ProtocolError) as exc:
            self._drop(channel, exc)

    def _pump(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Pump (or wait for the thread pumping) until ``done()``; False if ``timeout`` passed first. The caller
        holds the lock."""
        session = self._session
        end = None if timeout is None else self._now() + timeout
        while True:
            if session.ready and not self._selecting:
                self._flush()
            if done():
                return True
            now = self._now()
            if end is not None and now >= end:
                return False
            if self._selecting or self._wanting:
                # Another thread is in select (it wakes us after each round) or needs the sockets.
                self._turn.wait(None if end is None else end - now)
                continue
            wake = session.next_deadline()
            if end is not None and (wake is None or end < wake):
                wake = end
            if self._connections:
                self._round(None if wake is None else max(0.0, wake - now))
            elif wake is None:
                return done()  # nothing can arrive: everything pending was failed, or rerouted to nowhere
            else:
                self._turn.wait(wake - now)  # a retry delay: no connection to wait on
            self._close_channels(session.expire(self._now()))
            self._turn.notify_all()
