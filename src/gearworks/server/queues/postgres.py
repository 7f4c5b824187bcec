"""PostgreSQL queue store (psycopg 3): a table of jobs and one of dead letters, one transaction per batch, committed
with the server's ``synchronous_commit`` (on by default: the commit is fsync'd before ``apply`` returns).

Faults: every statement is bounded by ``statement_timeout`` and ``lock_timeout`` (a locked table), the socket by
``connect_timeout`` and ``tcp_user_timeout`` (a lost network), and a watchdog shuts the socket down when a call
overruns anyway (a stopped server process answers nothing, and the kernel still acknowledges its packets). A lost
connection (PostgreSQL restarted) is reopened by the next call, with backoff between failed attempts; meanwhile
calls fail at once with QueueError. One server per table: the owner holds a session advisory lock on the table's
name, taken again with each new connection; while another server holds it this one does not write."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import psycopg

from gearworks.connection.backoff import Backoff
from gearworks.errors import QueueError
from gearworks.server.queues.base import StoredJob

__all__ = ["PostgresStore"]

log = logging.getLogger("gearworks.server.queue")

_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    seq BIGSERIAL PRIMARY KEY,
    handle BYTEA NOT NULL UNIQUE,
    function BYTEA NOT NULL,
    unique_key BYTEA NOT NULL,
    workload BYTEA NOT NULL,
    priority SMALLINT NOT NULL,
    run_at DOUBLE PRECISION NOT NULL,
    reducer BYTEA,
    retries INTEGER NOT NULL DEFAULT 0
);
"""
_COLUMNS = "handle, function, unique_key, workload, priority, run_at, reducer, retries"
_LOCK = "pg_try_advisory_lock(hashtext('gearworks'), hashtext(%s))"
"""The owner lock: two-key form, so it cannot collide with another application's single-key advisory locks."""
_HOLDER = """
SELECT a.application_name, coalesce(host(a.client_addr), 'local'), a.pid
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid = hashtext('gearworks')::oid AND l.objid = hashtext(%s)::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
_WATCHDOG_GRACE = 0.5
"""Seconds past ``timeout`` before the watchdog cuts a call: the server's own timeouts get the first chance, and
they leave the connection usable."""
_IDLE_PING = 1.0
"""Seconds without a call after which a heartbeat checks the connection (and so the owner lock) with SELECT 1."""


def _row(job: StoredJob) -> tuple[object, ...]:
    return (job.handle, job.function, job.unique, job.workload, job.priority, job.when, job.reducer, job.retries)


_COPY_THRESHOLD = 64


def _replace(
    cursor: psycopg.Cursor[tuple[object, ...]],
    table: str,
    removed: Sequence[bytes],
    added: Sequence[StoredJob],
    owner: str | None = None,
) -> None:
    """Delete ``removed`` and insert ``added`` (COPY for large batches) in ``table``; with an ``owner`` (a shared
    store's node), only that owner's rows are deleted and the new ones are marked as its own."""
    if removed:
        mine, params = ("", (list(removed),)) if owner is None else (" AND owner = %s", (list(removed), owner))
        cursor.execute(f"DELETE FROM {table} WHERE handle = ANY(%s){mine}".encode(), params)
    if not added:
        return
    columns, mark = (_COLUMNS, ()) if owner is None else (_COLUMNS + ", owner", (owner,))
    if len(added) >= _COPY_THRESHOLD:
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN".encode()) as copy:
            for job in added:
                copy.write_row(_row(job) + mark)
    else:
        values = ", ".join(["%s"] * (8 + len(mark)))
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({values})".encode(), [_row(job) + mark for job in added]
        )


class _Watchdog:
    """Shuts down a connection's socket when a call runs ``limit`` seconds: the blocked read then ends with an
    error, and the connection is reopened by the next call. One daemon thread per store; ``guard`` costs a lock."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._fd = -1
        self._stopped = False
        threading.Thread(target=self._run, name="gearworks-queue-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def guard(self, fd: int) -> Iterator[None]:
        with self._cond:
            self._deadline, self._fd = time.monotonic() + self.limit, fd
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:  # once this is held, the watchdog cannot touch a descriptor the call no longer owns
                self._deadline = None

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._deadline = None
                log.error("PostgreSQL queue call ran over %.1f s: cutting the connection", self.limit)
                # socket.socket(fileno=...) owns (and closes) the descriptor it is given: shut down a duplicate.
                with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self._fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """End the thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify()


class PostgresStore:
    """Background jobs in a PostgreSQL table (dead letters in ``<table>_dead``).

    Args:
        url: a libpq URL or conninfo string.
        table: the table of this server's jobs (``--libpq-table``).
        timeout: seconds any statement, lock wait, connection attempt or unanswered socket may take.
        owner: the server claiming the table (``node_id()``, also its ``application_name``), or None.

    Raises:
        ValueError: a table name that is not an identifier.
        QueueError: PostgreSQL cannot be reached, or another live server owns the table.
    """

    durable = True

    def __init__(self, url: str, table: str = "gearworks_jobs", timeout: float = 5.0, owner: str | None = None) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.url = url
        self.table = table
        self.timeout = timeout
        self._owner = owner
        self._watchdog = _Watchdog(timeout + _WATCHDOG_GRACE)
        self._backoff = Backoff(initial=0.05, maximum=1.0)
        self._down_since: float | None = None
        self._used = time.monotonic()
        try:
            self._db: psycopg.Connection[tuple[object, ...]] | None = self._open()
        except psycopg.Error as exc:
            self._watchdog.stop()
            raise QueueError(f"cannot open PostgreSQL queue {url}: {exc}") from exc
        except QueueError:
            self._watchdog.stop()
            raise

    def _open(self) -> psycopg.Connection[tuple[object, ...]]:
        """Connect, bound every statement, claim the table and make sure it exists.

        Raises:
            psycopg.Error: PostgreSQL did not answer or refused.
            QueueError: another server owns the table.
        """
        milliseconds = int(self.timeout * 1000)
        db = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(2, math.ceil(self.timeout)),
            tcp_user_timeout=milliseconds,
            keepalives=1,
            keepalives_idle=max(1, int(self.timeout)),
            keepalives_interval=1,
            keepalives_count=3,
            application_name=(self._owner or "gearworks")[:63],
        )
        try:
            with self._watchdog.guard(db.fileno()):
                db.execute(
                    "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                    (str(milliseconds), str(milliseconds)),
                )
                self._prepare(db)
        except BaseException:
            db.close()
            raise
        return db

    def _prepare(self, db: psycopg.Connection[tuple[object, ...]]) -> None:
        """On a new connection: claim the table (with an owner) and make sure the tables exist."""
        if self._owner is not None:
            self._claim(db, _LOCK)
        db.execute((_TABLE.format(table=self.table) + _TABLE.format(table=f"{self.table}_dead")).encode())

    def _claim(self, db: psycopg.Connection[tuple[object, ...]], lock: str) -> None:
        """Take the advisory ``lock`` on the table's name, or refuse naming the session that holds it."""
        row = db.execute(f"SELECT {lock}".encode(), (self.table,)).fetchone()
        if row is not None and row[0]:
            return
        holder = db.execute(_HOLDER.encode(), (self.table,)).fetchone()
        who = f"{holder[0] or 'unnamed'} from {holder[1]}, backend pid {holder[2]}" if holder else "gone meanwhile"
        raise QueueError(f"PostgreSQL queue {self.url} table {self.table} is in use by another server ({who})")

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        """The open connection, or a new one when it was lost and the backoff allows an attempt.

        Raises:
            QueueError: not connected (an attempt failed now or recently).
        """
        db = self._db
        if db is not None and not db.broken and not db.closed:
            return db
        now = time.monotonic()
        if not self._backoff.available(now):
            raise QueueError(
                f"PostgreSQL queue {self.url} is unreachable; reconnecting in {self._backoff.delay(now):.1f} s"
            )
        try:
            self._db = self._open()
        except (psycopg.Error, QueueError) as exc:
            self._backoff.failed(now)
            failures = self._backoff.failures
            if failures & (failures - 1) == 0:  # attempts 1, 2, 4, 8, ...: a log line per doubling, not per try
                log.warning(
                    "PostgreSQL queue %s: reconnect attempt %d failed (%s); next in %.1f s",
                    self.url, failures, str(exc).strip(), self._backoff.delay(now),
                )  # fmt: skip
            raise QueueError(f"PostgreSQL queue {self.url} is unreachable: {exc}") from exc
        if self._down_since is not None:
            log.warning(
                "PostgreSQL queue %s: reconnected after %.1f s and %d failed attempts",
                self.url, now - self._down_since, self._backoff.failures,
            )  # fmt: skip
        self._backoff.succeeded()
        self._down_since = None
        return self._db

    def _failed(self, db: psycopg.Connection[tuple[object, ...]], exc: psycopg.Error) -> None:
        """After an error: note a lost connection (the next call reconnects)."""
        if (db.broken or db.closed) and self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("PostgreSQL queue %s: connection lost (%s); reconnecting", self.url, str(exc).strip())

    def load(self) -> Iterator[StoredJob]:
        """Every stored job, oldest first (streamed with a server-side cursor)."""
        return self._load(self.table)

    def load_dead(self) -> Iterator[StoredJob]:
        """Every dead letter, oldest first."""
        return self._load(f"{self.table}_dead")

    def _load(self, table: str, where: str = "", params: tuple[object, ...] = ()) -> Iterator[StoredJob]:
        db = self._connection()
        try:
            with db.transaction(), db.cursor(name="gearworks_load") as cursor:
                with self._watchdog.guard(db.fileno()):
                    cursor.execute(f"SELECT {_COLUMNS} FROM {table}{where} ORDER BY seq".encode(), params)
                while True:
                    with self._watchdog.guard(db.fileno()):
                        rows = cursor.fetchmany(1000)
                    if not rows:
                        return
                    for row in rows:
                        yield StoredJob(*row)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            self._failed(db, exc)
            raise QueueError(f"cannot read PostgreSQL queue {self.url}: {exc}") from exc

    def apply(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Delete ``removed`` and insert ``added`` (COPY for large batches), delete ``unburied`` and insert
        ``buried``, in one transaction."""
        db = self._connection()
        try:
            with self._watchdog.guard(db.fileno()), db.transaction(), db.cursor() as cursor:
                self._write(cursor, added, removed, buried, unburied)
        except psycopg.Error as exc:
            self._failed(db, exc)
            raise QueueError(f"PostgreSQL queue {self.url} write failed: {exc}") from exc
        finally:
            self._used = time.monotonic()

    def _write(
        self,
        cursor: psycopg.Cursor[tuple[object, ...]],
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob],
        unburied: Sequence[bytes],
    ) -> None:
        """The statements of one ``apply`` transaction."""
        _replace(cursor, self.table, removed, added)
        _replace(cursor, f"{self.table}_dead", unburied, buried)

    def heartbeat(self) -> None:
        """When idle, check the connection with SELECT 1 (reconnecting, and so re-taking the owner lock, as soon
        as PostgreSQL is back rather than at the next write)."""
        if time.monotonic() - self._used < _IDLE_PING:
            return
        try:
            db = self._connection()
        except QueueError:
            return  # logged by the reconnect attempt
        try:
            with self._watchdog.guard(db.fileno()):
                db.execute("SELECT 1")
        except psycopg.Error as exc:
            self._failed(db, exc)
        finally:
            self._used = time.monotonic()

    def close(self) -> None:
        """Close the connection (which releases the owner lock)."""
        self._watchdog.stop()
        if self._db is not None:
            self._db.close()
