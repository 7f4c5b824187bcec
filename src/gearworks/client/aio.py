"""AsyncClient: the asyncio front-end. It connects, writes, reads and arms one timer; the ClientSession decides.

Submissions are queued synchronously and written at the end of the loop turn, many packets per write, so
``[client.submit(...) for _ in range(10_000)]`` pipelines without waiting for any JOB_CREATED. Back-pressure:
``do``, ``submit_background`` and ``wait`` first wait (within their timeout) while a transport is over its
high-water mark; a synchronous ``submit`` raises BufferError once ``write_buffer_limit`` bytes are unsent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack, cast

from gearworks.admin import AsyncAdmin, ClientInfo, FunctionStatus, QueuedJob, Rows, WorkerInfo
from gearworks.client.jobs import Job, JobHandle, JobStatus, SubmitOptions, TaskSet, UniqueStatus, all_finished
from gearworks.client.session import BaseClient, Channel, ChannelState, ClientOptions
from gearworks.connection import ServerAddress
from gearworks.connection.aio import AsyncConnection, open_connection
from gearworks.errors import ConnectionLost, GearworksError, JobTimeout

__all__ = ["AsyncClient", "AsyncTaskSet"]

R = TypeVar("R")

_CLOSE_GRACE = 1.0
"""Seconds close() waits for connections to shut down cleanly before aborting them."""


class _Link:
    """Feeds one connection's bytes and loss to the client; muted once the client drops that connection."""

    __slots__ = ("channel", "client", "gone", "live")

    def __init__(self, client: AsyncClient, channel: Channel) -> None:
        self.client = client
        self.channel = channel
        self.live = True
        self.gone = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        if self.live:
            self.client._received(self.channel, data)

    def connection_lost(self, exc: Exception) -> None:
        self.gone.set()
        if self.live:
            self.live = False
            self.client._lost(self.channel, exc)


class AsyncTaskSet(TaskSet):
    """A task set of an AsyncClient: ``add`` jobs, then ``await wait(timeout)``."""

    _client: AsyncClient

    # A timeout argument (not asyncio.timeout around the call) because expiry must fail the unfinished jobs.
    async def wait(self, timeout: float | None = None) -> list[Job]:  # noqa: ASYNC109
        """Wait until every job is done; after ``timeout`` seconds the rest fail with JobTimeout."""
        return await self._client.wait(self.jobs, timeout)


class AsyncClient(BaseClient):
    """asyncio Gearman client.

    Args:
        servers: ``"host:port"``, ``"host"`` (port 4730), a Unix socket path, a list of them, or a comma-separated
            string; None reads ``$GEARMAN_SERVERS`` (default 127.0.0.1:4730).
        options: see ClientOptions: the connection keywords (``connect_timeout`` [5.0], ``command_timeout``
            [30.0], TLS, keepalive, packet limit) and prefix, exceptions, backoff, retry delays, codec,
            ``write_buffer_limit``.

    Use ``async with AsyncClient(...) as client`` or call ``await client.close()``. It may be made outside a
    running loop (at import time); it belongs to the loop that first uses it until ``close()``, and using it from
    another loop meanwhile raises RuntimeError. Not thread-safe: use it from its loop's thread.
    """

    def __init__(
        self,
        servers: str | ServerAddress | Iterable[str | ServerAddress] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(servers, **options)
        self._connections: dict[Channel, AsyncConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --------------------------------------------------------------------------------------------- public API

    async def do(self, function: str | bytes, workload: object = b"", **options: Unpack[SubmitOptions]) -> Any:
        """Run a foreground job and return its result (bytes, or what the codec decodes).

        Raises:
            JobFailed, JobException, JobTimeout, ConnectionLost, ServerError: the job did not complete.
            TypeError: a workload that is not bytes-like or str (without a codec).
            ClientClosed: the client was closed.
        """
        if not self._all_writable():
            await self._room(options)
        return await self.submit(function, workload, **options)

    do_task = do

    async def submit_background(
        self,
        function: str | bytes,
        workload: object = b"",
        *,
        when: float | None = None,
        **options: Unpack[SubmitOptions],
    ) -> JobHandle:
        """Queue a background job (not run before ``when``, epoch seconds, if given) and return its handle once
        created."""
        await self._room(options)
        return cast(JobHandle, await self.submit(function, workload, background=True, when=when, **options))

    async def submit_background_many(
        self, function: str | bytes, workloads: Iterable[object], **options: Unpack[SubmitOptions]
    ) -> list[JobHandle]:
        """Queue one background job per workload (``submit_many``) and return their handles, in order, once every
        one is created.

        Raises:
            ValueError, TypeError: bad arguments or workloads (nothing is sent).
            ServerError, ConnectionLost, JobTimeout: the first job in order that failed (the others are created
                or failed too by then); ``submit_many(..., background=True)`` gives each job's own outcome.
        """
        await self._room(options)
        jobs = self.submit_many(function, workloads, background=True, **options)
        await all_finished(jobs)
        return self._handles(jobs)

    def task_set(self) -> AsyncTaskSet:
        """A new, empty task set."""
        return AsyncTaskSet(self)

    async def wait(self, jobs: Iterable[Job], timeout: float | None = None) -> list[Job]:  # noqa: ASYNC109
        """Wait until every job is done (whatever the outcome); after ``timeout`` seconds the rest fail with
        JobTimeout. Returns the jobs."""
        jobs = list(jobs)
        self._flush()
        try:
            async with asyncio.timeout(timeout):
                await self.drain()
                await all_finished(jobs)
        except TimeoutError:
            self._abandon(jobs)
        return jobs

    async def get_status(self, handle: bytes) -> JobStatus:
        """Ask the server that issued ``handle`` (or every server, for plain bytes) about a job."""
        call = self._session.get_status(handle, self._now())
        self._flush()
        return await call

    async def get_status_unique(self, unique: bytes | str) -> UniqueStatus:
        """Ask the server that jobs with this unique key go to about the newest such job."""
        key = unique.encode() if isinstance(unique, str) else unique
        call = self._session.get_status_unique(key, self._now())
        self._flush()
        return await call

    async def echo(self, data: bytes = b"") -> bytes:
        """Round-trip ``data`` through a server (ECHO_REQ)."""
        call = self._session.echo(data, self._now())
        self._flush()
        return await call

    async def option(self, name: str | bytes = "exceptions") -> None:
        """Set a server option on every connection, now and after each reconnect.

        Raises:
            ServerError: the server does not know the option.
        """
        call = self._session.option(name.encode() if isinstance(name, str) else name, self._now())
        self._flush()
        await call

    async def get_job_server_status(self) -> dict[ServerAddress, Rows[FunctionStatus]]:
        """Per server: each function's jobs (queued + running), running jobs and capable workers (admin ``status``)."""
        return await self._each_server(AsyncAdmin.status)

    async def get_job_server_workers(self) -> dict[ServerAddress, Rows[WorkerInfo]]:
        """Per server: every connection with its client id and functions (admin ``workers``)."""
        return await self._each_server(AsyncAdmin.workers)

    async def get_job_server_jobs(self) -> dict[ServerAddress, Rows[QueuedJob]]:
        """Per server: its jobs (admin ``jobs``: the Perl Gearman::Server and gearworks; gearmand raises
        ServerError)."""
        return await self._each_server(AsyncAdmin.jobs)

    async def get_job_server_clients(self) -> dict[ServerAddress, Rows[ClientInfo]]:
        """Per server: client connections and the jobs they wait on (admin ``clients``, as ``jobs``)."""
        return await self._each_server(AsyncAdmin.clients)

    async def _each_server(self, query: Callable[[AsyncAdmin], Awaitable[R]]) -> dict[ServerAddress, R]:
        timeout = self._session.command_timeout or 30.0

        async def ask(address: ServerAddress) -> R:
            async with AsyncAdmin(address, command_timeout=timeout, **self._connection) as admin:
                return await query(admin)

        servers = self.servers
        # Every query finishes (none is left running) before the first error, if any, is raised.
        results = await asyncio.gather(*(ask(address) for address in servers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return dict(zip(servers, cast(list[R], results), strict=True))

    async def connect(self) -> None:
        """Open a connection to every server not in its backoff now (otherwise they open on first use); a closed
        client is usable again. A server that cannot be reached backs off, as on first use."""
        self._session.reopen(self._now())
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until no connection holds more than its transport's high-water mark unsent (back-pressure for a
        loop of synchronous ``submit`` calls)."""
        for connection in list(self._connections.values()):
            connection.flush()
            await connection.drain()

    async def close(self) -> None:
        """Fail every pending job with ConnectionLost and close every connection; nothing is left waiting. Using
        the client afterwards raises ClientClosed until ``connect()``, which may be in another loop."""
        closing = list(self._connections.values())
        self._close_channels(self._session.close(ConnectionLost("the client was closed")))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Let transports finish closing (a TLS close_notify exchange takes a few loop turns); abort stragglers.
        try:
            async with asyncio.timeout(_CLOSE_GRACE):
                for connection in closing:
                    await cast(_Link, connection.receiver).gone.wait()
        except TimeoutError:
            for connection in closing:
                if not connection.closed and connection.transport is not None:
                    connection.transport.abort()
        await asyncio.sleep(0)
        self._loop = None

    # ------------------------------------------------------------------------------------------------ driver

    def _now(self) -> float:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                raise RuntimeError(
                    "this AsyncClient belongs to the event loop that first used it: close() it there first, "
                    "or make one client per loop"
                )
            self._loop = loop
        return loop.time()

    async def _room(self, options: SubmitOptions) -> None:
        """Before an awaiting submission: ``drain()`` within the job's timeout, which then counts what is left.

        Raises:
            JobTimeout: the servers did not read enough within the timeout.
        """
        if self._all_writable():
            return
        timeout = options.get("timeout")
        started = self._now()
        try:
            async with asyncio.timeout(timeout):
                await self.drain()
        except TimeoutError:
            raise JobTimeout(f"servers did not take more bytes within the job's timeout of {timeout}s") from None
        if timeout is not None:
            options["timeout"] = timeout - (self._now() - started)

    def _all_writable(self) -> bool:
        """Whether no connection is over its write buffer's high-water mark (then ``_room`` has nothing to wait
        for: ``do`` skips its coroutine)."""
        return all(connection.writable for connection in self._connections.values())

    def _make_room(self) -> None:
        unsent = sum(connection.buffered for connection in self._connections.values())
        if unsent > self.write_buffer_limit:
            raise BufferError(
                f"{unsent} bytes are waiting to be written (write_buffer_limit={self.write_buffer_limit}): "
                "await client.drain(), or an awaiting call, before submitting more"
            )

    def _flush(self) -> None:
        session = self._session
        for channel in session.take_ready():
            if channel.state is ChannelState.CONNECTED:
                connection = self._connections[channel]
                connection.write(channel.take_out())
                if len(channel.pending) == 1:
                    connection.flush()  # a lone request (sequential use): out now, not at the end of the loop turn
            elif session.start_connecting(channel):
                task = asyncio.get_running_loop().create_task(self._connect(channel))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._arm_timer()

    _queued = _flush

    def _close_channels(self, channels: list[Channel]) -> None:
        for channel in channels:
            connection = self._connections.pop(channel, None)
            if connection is not None:
                cast(_Link, connection.receiver).live = False
                connection.close()

    async def _connect(self, channel: Channel) -> None:
        try:
            connection = await open_connection(channel.address, _Link(self, channel), self.connect_options)
        except ConnectionLost as exc:
            if self._session.closed is None:
                self._session.connect_failed(channel, exc, self._now())
                self._flush()
            return
        if self._session.closed is not None or channel.state is not ChannelState.CONNECTING:
            connection.close()
            return
        self._connections[channel] = connection
        self._session.connected(channel, self._now())
        self._flush()

    def _received(self, channel: Channel, data: bytes) -> None:
        session = self._session
        session.receive(channel, data, asyncio.get_running_loop().time())
        if session.ready:
            self._flush()
        else:
            self._arm_timer()  # a retry delay may have started

    def _lost(self, channel: Channel, exc: Exception) -> None:
        self._connections.pop(channel, None)
        error = exc if isinstance(exc, GearworksError) else ConnectionLost(str(exc))
        self._session.lost(channel, error, self._now())
        self._flush()

    def _arm_timer(self) -> None:
        deadline = self._session.next_deadline()
        if deadline is None or (self._timer is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._close_channels(self._session.expire(self._now()))
        self._flush()
