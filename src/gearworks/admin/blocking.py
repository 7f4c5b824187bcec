"""Admin: the admin text protocol over one blocking socket, one command at a time (thread-safe).

Parsing lives in ``commands``/``models`` (shared with ``AsyncAdmin``); this module only connects, sends a line and
reads until its reply is complete.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TypeVar

from gearworks.admin import commands, models
from gearworks.admin.commands import AdminCommand, AdminSettings
from gearworks.connection.blocking import BlockingConnection
from gearworks.errors import ConnectionLost
from gearworks.protocol import AdminReply, AdminReplyReader

__all__ = ["Admin"]

T = TypeVar("T")


class Admin(AdminSettings):
    """Admin client for one job server (blocking, one command at a time, thread-safe). Connects on first use;
    ``with`` closes it. Arguments: see ``AdminSettings``."""

    def _setup(self) -> None:
        self._connection: BlockingConnection | None = None
        self._lock = threading.RLock()  # a failed command closes the connection while holding it

    def __enter__(self) -> Admin:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later command reconnects); waits for a command another thread is running."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _run(self, command: AdminCommand[T]) -> T:
        with self._lock:
            if self._connection is None:
                self._connection = BlockingConnection.connect(self.address, self.connect_options)
            connection = self._connection
            reader = AdminReplyReader()
            reader.expect(command.shape)
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            try:
                connection.send([command.line])
                replies: list[AdminReply] = []
                while not replies:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise ConnectionLost(f"{self.address} did not answer {command.line!r} within {self.timeout}s")
                    replies = reader.feed(connection.recv(remaining))
            except BaseException:
                self.close()
                raise
        return command.result(replies[0], str(self.address))

    def command(self, line: str | bytes) -> AdminReply:
        """Send any admin line and return the reply unparsed (``raw``, ``lines``); ERR lines raise ServerError."""
        return self._run(commands.raw(line))

    def status(self) -> models.Rows[models.FunctionStatus]:
        """Per function: jobs queued + running, running, registered workers."""
        return self._run(commands.status())

    def prioritystatus(self) -> models.Rows[models.PriorityStatus]:
        """Per function: queued jobs per priority and registered workers."""
        return self._run(commands.prioritystatus())

    def workers(self) -> models.Rows[models.WorkerInfo]:
        """Every connection with its client id and registered functions."""
        return self._run(commands.workers())

    def show_jobs(self) -> models.Rows[models.JobInfo]:
        """Every job the server holds."""
        return self._run(commands.show_jobs())

    def show_unique_jobs(self) -> models.Rows[bytes]:
        """The unique key of every job the server holds."""
        return self._run(commands.show_unique_jobs())

    def jobs(self) -> models.Rows[models.QueuedJob]:
        """The Perl Gearman::Server's (and gearworks') ``jobs`` listing."""
        return self._run(commands.jobs())

    def clients(self) -> models.Rows[models.ClientInfo]:
        """The Perl Gearman::Server's (and gearworks') ``clients`` listing."""
        return self._run(commands.clients())

    def version(self) -> str:
        """The server's version string, e.g. ``1.1.20+ds``."""
        return self._run(commands.version())

    def getpid(self) -> int:
        """The server's process id."""
        return self._run(commands.getpid())

    def verbose(self) -> str:
        """The server's log level name, e.g. ``INFO``."""
        return self._run(commands.verbose())

    def maxqueue(self, function: str | bytes, size: int | tuple[int, int, int] | None = None) -> None:
        """Cap the function's jobs (one size, or high/normal/low); None removes the cap."""
        self._run(commands.maxqueue(function, size))

    def create_function(self, function: str | bytes) -> None:
        """Create a function record."""
        self._run(commands.create_function(function))

    def drop_function(self, function: str | bytes) -> None:
        """Drop a function record (ServerError while workers are registered or jobs run)."""
        self._run(commands.drop_function(function))

    def cancel_job(self, handle: str | bytes) -> None:
        """Cancel a job by handle (ServerError UNKNOWN_JOB if the server does not know it)."""
        self._run(commands.cancel_job(handle))

    def cluster(self) -> models.Rows[models.ClusterNode]:
        """gearworks' cluster mode: the nodes sharing the server's store, their leases and the jobs each owns."""
        return self._run(commands.cluster())

    def dead_letters(self) -> models.Rows[models.DeadLetter]:
        """gearworks' dead letters: background jobs handed out ``--job-retries`` times without a result."""
        return self._run(commands.dead_letters())

    def requeue_dead(self, handle: str | bytes | None = None) -> int:
        """Put a dead letter (all when ``handle`` is None) back in its queue; returns how many (ServerError
        UNKNOWN_JOB for an unknown handle)."""
        return self._run(commands.requeue_dead(handle))

    def purge_dead(self, handle: str | bytes | None = None) -> int:
        """Forget a dead letter (all when ``handle`` is None); returns how many (ServerError UNKNOWN_JOB for an
        unknown handle)."""
        return self._run(commands.purge_dead(handle))

    def stats(self, function: str | bytes | None = None) -> models.Rows[models.FunctionStats]:
        """gearworks' per-function counters, gauges and p50/p99 latencies (all functions, or one)."""
        return self._run(commands.stats(function))

    def shutdown(self, graceful: bool = False) -> None:
        """Stop the server (gearmand 1.1.20 refuses: ServerError UNKNOWN_COMMAND); the connection is closed."""
        try:
            self._run(commands.shutdown(graceful))
        finally:
            self.close()
