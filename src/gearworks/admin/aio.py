"""AsyncAdmin: the admin text protocol over one asyncio connection, commands pipelined and answered in order.

Parsing lives in ``commands``/``models`` (shared with the blocking ``Admin``); this module only connects, writes
lines and matches replies to waiting calls, first in first out (PROTOCOL.md §1.1: replies come in request order).
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import TypeVar

from gearworks.admin import commands, models
from gearworks.admin.commands import AdminCommand, AdminSettings
from gearworks.connection.aio import AsyncConnection, open_connection
from gearworks.errors import ConnectionLost
from gearworks.protocol import AdminReply, AdminReplyReader

__all__ = ["AsyncAdmin"]

T = TypeVar("T")


class _Channel:
    """One connection's replies: the reader and the calls waiting, in the order their commands went out."""

    def __init__(self) -> None:
        self.connection: AsyncConnection | None = None
        self.reader = AdminReplyReader()
        self.waiters: deque[asyncio.Future[AdminReply]] = deque()
        self.failure: Exception | None = None

    def data_received(self, data: bytes) -> None:
        for reply in self.reader.feed(data):
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception) -> None:
        self.fail(exc)

    def fail(self, exc: Exception) -> None:
        """Fail every waiting call; the channel is unusable afterwards."""
        self.failure = self.failure or exc
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)


class AsyncAdmin(AdminSettings):
    """Admin client for one job server (asyncio). Connects on first use; ``async with`` closes it. Commands sent
    concurrently are pipelined on the one connection. Arguments: see ``AdminSettings``."""

    def _setup(self) -> None:
        self._channel: _Channel | None = None
        self._connecting = asyncio.Lock()

    async def __aenter__(self) -> AsyncAdmin:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (a later command reconnects)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.fail(ConnectionLost(f"admin connection to {self.address} closed"))
            if channel.connection is not None:
                channel.connection.close()

    async def _open(self) -> _Channel:
        async with self._connecting:
            channel = self._channel
            if channel is None or channel.failure is not None:
                channel = _Channel()
                channel.connection = await open_connection(self.address, channel, self.connect_options)
                self._channel = channel
            return channel

    async def _run(self, command: AdminCommand[T]) -> T:
        channel = await self._open()
        assert channel.connection is not None
        waiter: asyncio.Future[AdminReply] = asyncio.get_running_loop().create_future()
        channel.reader.expect(command.shape)
        channel.waiters.append(waiter)
        try:
            channel.connection.write([command.line])
            async with asyncio.timeout(self.timeout):
                reply = await waiter
        except TimeoutError:
            # The reply may still come and would be paired with the next command: start over on a new connection.
            lost = ConnectionLost(f"{self.address} did not answer {command.line!r} within {self.timeout}s")
            channel.fail(lost)
            channel.connection.close()
            raise lost from None
        except ConnectionLost as exc:
            channel.fail(exc)
            raise
        return command.result(reply, str(self.address))

    async def command(self, line: str | bytes) -> AdminReply:
        """Send any admin line and return the reply unparsed (``raw``, ``lines``); ERR lines raise ServerError."""
        return await self._run(commands.raw(line))

    async def status(self) -> models.Rows[models.FunctionStatus]:
        """Per function: jobs queued + running, running, registered workers."""
        return await self._run(commands.status())

    async def prioritystatus(self) -> models.Rows[models.PriorityStatus]:
        """Per function: queued jobs per priority and registered workers."""
        return await self._run(commands.prioritystatus())

    async def workers(self) -> models.Rows[models.WorkerInfo]:
        """Every connection with its client id and registered functions."""
        return await self._run(commands.workers())

    async def show_jobs(self) -> models.Rows[models.JobInfo]:
        """Every job the server holds."""
        return await self._run(commands.show_jobs())

    async def show_unique_jobs(self) -> models.Rows[bytes]:
        """The unique key of every job the server holds."""
        return await self._run(commands.show_unique_jobs())

    async def jobs(self) -> models.Rows[models.QueuedJob]:
        """The Perl Gearman::Server's (and gearworks') ``jobs`` listing."""
        return await self._run(commands.jobs())

    async def clients(self) -> models.Rows[models.ClientInfo]:
        """The Perl Gearman::Server's (and gearworks') ``clients`` listing."""
        return await self._run(commands.clients())

    async def version(self) -> str:
        """The server's version string, e.g. ``1.1.20+ds``."""
        return await self._run(commands.version())

    async def getpid(self) -> int:
        """The server's process id."""
        return await self._run(commands.getpid())

    async def verbose(self) -> str:
        """The server's log level name, e.g. ``INFO``."""
        return await self._run(commands.verbose())

    async def maxqueue(self, function: str | bytes, size: int | tuple[int, int, int] | None = None) -> None:
        """Cap the function's jobs (one size, or high/normal/low); None removes the cap."""
        await self._run(commands.maxqueue(function, size))

    async def create_function(self, function: str | bytes) -> None:
        """Create a function record."""
        await self._run(commands.create_function(function))

    async def drop_function(self, function: str | bytes) -> None:
        """Drop a function record (ServerError while workers are registered or jobs run)."""
        await self._run(commands.drop_function(function))

    async def cancel_job(self, handle: str | bytes) -> None:
        """Cancel a job by handle (ServerError UNKNOWN_JOB if the server does not know it)."""
        await self._run(commands.cancel_job(handle))

    async def cluster(self) -> models.Rows[models.ClusterNode]:
        """gearworks' cluster mode: the nodes sharing the server's store, their leases and the jobs each owns."""
        return await self._run(commands.cluster())

    async def dead_letters(self) -> models.Rows[models.DeadLetter]:
        """gearworks' dead letters: background jobs handed out ``--job-retries`` times without a result."""
        return await self._run(commands.dead_letters())

    async def requeue_dead(self, handle: str | bytes | None = None) -> int:
        """Put a dead letter (all when ``handle`` is None) back in its queue; returns how many (ServerError
        UNKNOWN_JOB for an unknown handle)."""
        return await self._run(commands.requeue_dead(handle))

    async def purge_dead(self, handle: str | bytes | None = None) -> int:
        """Forget a dead letter (all when ``handle`` is None); returns how many (ServerError UNKNOWN_JOB for an
        unknown handle)."""
        return await self._run(commands.purge_dead(handle))

    async def stats(self, function: str | bytes | None = None) -> models.Rows[models.FunctionStats]:
        """gearworks' per-function counters, gauges and p50/p99 latencies (all functions, or one)."""
        return await self._run(commands.stats(function))

    async def shutdown(self, graceful: bool = False) -> None:
        """Stop the server (gearmand 1.1.20 refuses: ServerError UNKNOWN_COMMAND); the connection is closed."""
        try:
            await self._run(commands.shutdown(graceful))
        finally:
            await self.close()
