"""SQLite queue store (stdlib ``sqlite3``): the embedded durable choice. WAL journal with ``synchronous=FULL``, so
a batch is fsync'd before ``apply`` returns; one transaction per batch (group commit). A lock held by another
connection is waited for at most ``timeout`` seconds (SQLite's busy timeout). One server per table: the owner holds
an exclusive ``flock`` on ``<db>.<table>.owner``, which names it, for as long as the store is open."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from gearworks.errors import QueueError
from gearworks.server.queues.base import StoredJob

__all__ = ["SQLiteStore"]

_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    handle BLOB NOT NULL UNIQUE,
    function BLOB NOT NULL,
    unique_key BLOB NOT NULL,
    workload BLOB NOT NULL,
    priority INTEGER NOT NULL,
    run_at REAL NOT NULL,
    reducer BLOB,
    retries INTEGER NOT NULL DEFAULT 0
);
"""
_COLUMNS = "handle, function, unique_key, workload, priority, run_at, reducer, retries"


def _row(job: StoredJob) -> tuple[object, ...]:
    return (job.handle, job.function, job.unique, job.workload, job.priority, job.when, job.reducer, job.retries)


class SQLiteStore:
    """Background jobs in one SQLite file: live jobs in ``table``, dead letters in ``<table>_dead``.

    Args:
        path: the database file.
        table: the table of this server's jobs (``--libsqlite3-table``).
        timeout: seconds a write waits for another connection's lock before failing.
        owner: the server claiming the table (``node_id()``), or None to open it unclaimed.

    Raises:
        ValueError: a table name that is not an identifier.
        QueueError: the file cannot be opened, or another live server owns the table.
    """

    durable = True

    def __init__(
        self, path: str | Path, table: str = "gearworks_jobs", timeout: float = 5.0, owner: str | None = None
    ) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.path = str(path)
        self._jobs, self._dead = table, f"{table}_dead"
        self._owner_file = self._claim(owner) if owner is not None else None
        try:
            # The store is used from one thread at a time, but not always the one that opened it.
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_TABLE.format(table=self._jobs) + _TABLE.format(table=self._dead))
        except sqlite3.Error as exc:
            self._release()
            raise QueueError(f"cannot open SQLite queue {self.path}: {exc}") from exc

    def _claim(self, owner: str) -> int:
        """Lock ``<db>.<table>.owner`` for this server and write ``owner`` into it; returns its descriptor. The
        kernel drops the lock when the process dies, so a crashed owner never blocks a restart."""
        lock_path = f"{self.path}.{self._jobs}.owner"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise QueueError(f"cannot open SQLite queue {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise QueueError(
                f"SQLite queue {self.path} table {self._jobs} is in use by another server ({holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode() + b"\n", 0)
        return fd

    def _release(self) -> None:
        if self._owner_file is not None:
            os.close(self._owner_file)  # closing the descriptor releases the flock
            self._owner_file = None

    def load(self) -> Iterator[StoredJob]:
        """Every stored job, oldest first."""
        return self._load(self._jobs)

    def load_dead(self) -> Iterator[StoredJob]:
        """Every dead letter, oldest first."""
        return self._load(self._dead)

    def _load(self, table: str) -> Iterator[StoredJob]:
        try:
            for row in self._db.execute(f"SELECT {_COLUMNS} FROM {table} ORDER BY seq"):
                yield StoredJob(*row)
        except sqlite3.Error as exc:
            raise QueueError(f"cannot read SQLite queue {self.path}: {exc}") from exc

    def apply(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Delete ``removed`` and insert ``added``, delete ``unburied`` and insert ``buried``, in one fsync'd
        transaction."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._replace(self._jobs, removed, added)
                self._replace(self._dead, unburied, buried)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may already have rolled back
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise QueueError(f"SQLite queue {self.path} write failed: {exc}") from exc

    def _replace(self, table: str, removed: Sequence[bytes], added: Sequence[StoredJob]) -> None:
        if removed:
            self._db.executemany(f"DELETE FROM {table} WHERE handle = ?", [(handle,) for handle in removed])
        if added:
            self._db.executemany(
                f"INSERT OR REPLACE INTO {table} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", map(_row, added)
            )

    def heartbeat(self) -> None:
        """Nothing to renew: the file lock lasts as long as the descriptor."""

    def close(self) -> None:
        """Close the database file and give up the claim."""
        self._db.close()
        self._release()
