"""Client: the blocking front-end. Each call writes what the ClientSession queued, then pumps the sockets
(one ``recv`` with a timeout, or a selector over several) until what it waits for is done.

Not thread-safe: use one Client per thread.
"""

from __future__ import annotations

import selectors
import ssl
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self, TypeVar, Unpack, cast

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


class BlockingTaskSet(TaskSet):
    """A task set of a blocking Client: ``add`` jobs, then ``wait(timeout)``."""

    _client: Client

    def wait(self, timeout: float | None = None) -> list[Job]:
        """Send the queued jobs and wait until every one is done; after ``timeout`` seconds the rest fail with
        JobTimeout."""
        return self._client.wait(self.jobs, timeout)


class Client(BaseClient):
    """Blocking Gearman client; the same methods as AsyncClient, without ``await``.

    Args:
        servers: ``"host:port"``, ``"host"`` (port 4730), a Unix socket path, a list of them, or a comma-separated
            string; None reads ``$GEARMAN_SERVERS`` (default 127.0.0.1:4730).
        options: see ClientOptions: the connection keywords (``connect_timeout``, ``command_timeout``, TLS,
            keepalive, packet limit) and prefix, exceptions, backoff.
    """

    def __init__(
        self,
        servers: str | ServerAddress | Iterable[str | ServerAddress] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(servers, **options)
        self._connections: dict[Channel, BlockingConnection] = {}
        self._selector = selectors.DefaultSelector()
        self._queued_jobs = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --------------------------------------------------------------------------------------------- public API

    def do(self, function: str | bytes, workload: bytes | str = b"", **options: Unpack[SubmitOptions]) -> bytes:
        """Run a foreground job and return its result.

        Raises:
            JobFailed, JobException, JobTimeout, ConnectionLost, ServerError: the job did not complete.
        """
        job = self.submit(function, workload, **options)
        self._pump(lambda: job.done)
        return job.result()

    do_task = do

    def submit_background(
        self,
        function: str | bytes,
        workload: bytes | str = b"",
        *,
        when: float | None = None,
        **options: Unpack[SubmitOptions],
    ) -> JobHandle:
        """Queue a background job (at ``when``, epoch seconds, if given) and return its handle once created."""
        job = self.submit(function, workload, background=True, when=when, **options)
        self._pump(lambda: job.done)
        return cast(JobHandle, job.result())

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

        if not self._pump(all_done, timeout):
            self._abandon(jobs)
        return jobs

    def get_status(self, handle: bytes) -> JobStatus:
        """Ask the server that issued ``handle`` (or every server, for plain bytes) about a job."""
        return self._call(self._session.get_status(handle, self._now()))

    def get_status_unique(self, unique: bytes | str) -> UniqueStatus:
        """Ask the server that jobs with this unique key go to about the newest such job."""
        key = unique.encode() if isinstance(unique, str) else unique
        return self._call(self._session.get_status_unique(key, self._now()))

    def echo(self, data: bytes = b"") -> bytes:
        """Round-trip ``data`` through a server (ECHO_REQ)."""
        return self._call(self._session.echo(data, self._now()))

    def option(self, name: str | bytes = "exceptions") -> None:
        """Set a server option on every connection, now and after each reconnect.

        Raises:
            ServerError: the server does not know the option.
        """
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

    def close(self) -> None:
        """Fail every pending job with ConnectionLost and close every connection."""
        self._close_channels(self._session.close(ConnectionLost("the client was closed")))
        self._selector.close()

    # ------------------------------------------------------------------------------------------------ driver

    def _call(self, call: Call[T]) -> T:
        self._pump(lambda: call.done)
        return call.result()

    def _now(self) -> float:
        return time.monotonic()

    def _flush(self) -> None:
        self._queued_jobs = 0
        if self._connections:
            self._read(0.0)  # notice a connection the server closed while we were idle, before writing to it
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

    def _connect(self, channel: Channel) -> None:
        session = self._session
        try:
            connection = BlockingConnection.connect(channel.address, self.connect_options)
        except ConnectionLost as exc:
            session.connect_failed(channel, exc, self._now())
            return
        self._connections[channel] = connection
        self._selector.register(connection.sock, selectors.EVENT_READ, channel)
        session.connected(channel, self._now())

    def _send(self, channel: Channel) -> None:
        connection = self._connections[channel]
        try:
            connection.send(channel.take_out())
        except ConnectionLost as exc:
            self._drop(channel, exc)

    def _drop(self, channel: Channel, error: GearworksError) -> None:
        connection = self._connections.pop(channel, None)
        if connection is not None:
            self._selector.unregister(connection.sock)
            connection.close()
        self._session.lost(channel, error, self._now())

    def _close_channels(self, channels: list[Channel]) -> None:
        for channel in channels:
            connection = self._connections.pop(channel, None)
            if connection is not None:
                self._selector.unregister(connection.sock)
                connection.close()

    def _read(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for bytes from any server and hand them to the session."""
        connections = self._connections
        if len(connections) == 1 and timeout != 0:
            ready = list(connections)  # one server: a plain recv with a timeout, no selector round trip
        else:
            # TLS may hold decrypted bytes the socket no longer shows as readable.
            ready = [ch for ch, c in connections.items() if isinstance(c.sock, ssl.SSLSocket) and c.sock.pending()]
            if not ready:
                ready = [key.data for key, _ in self._selector.select(timeout)]
            timeout = None
        for channel in ready:
            connection = connections.get(channel)
            if connection is None:
                continue
            try:
                data = connection.recv(timeout)
                if data:
                    self._session.receive(channel, data, self._now())
            except (ConnectionLost, ProtocolError) as exc:
                self._drop(channel, exc)

    def _pump(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Write what is queued, then read and expire until ``done()``; False if ``timeout`` passed first."""
        session = self._session
        if session.ready:
            self._flush()
        end = None if timeout is None else self._now() + timeout
        while not done():
            if not self._connections:
                if session.ready:
                    self._flush()
                    continue
                # Nothing can arrive: everything pending was failed, or rerouted to nowhere.
                return done()
            now = self._now()
            if end is not None and now >= end:
                return False
            wake = session.next_deadline()
            if end is not None and (wake is None or end < wake):
                wake = end
            self._read(None if wake is None else max(0.0, wake - now))
            self._close_channels(session.expire(self._now()))
            if session.ready:
                self._flush()
        return True
