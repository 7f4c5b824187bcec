"""SQLite queue store (stdlib ``sqlite3``): the embedded durable choice. WAL journal with ``synchronous=FULL``, so
a batch is fsync'd before ``apply`` returns; one transaction per batch (group commit)."""

from __future__ import annotations

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
_JOBS, _DEAD = "gearworks_jobs", "gearworks_dead"
"""Live background jobs, and dead letters (jobs that failed ``--job-retries`` times): the same columns."""
_COLUMNS = "handle, function, unique_key, workload, priority, run_at, reducer, retries"


def _row(job: StoredJob) -> tuple[object, ...]:
    return (job.handle, job.function, job.unique, job.workload, job.priority, job.when, job.reducer, job.retries)


class SQLiteStore:
    """Background jobs in one SQLite file."""

    durable = True

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            # The store is used from one thread at a time, but not always the one that opened it.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_TABLE.format(table=_JOBS) + _TABLE.format(table=_DEAD))
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open SQLite queue {self.path}: {exc}") from exc

    def load(self) -> Iterator[StoredJob]:
        """Every stored job, oldest first."""
        return self._load(_JOBS)

    def load_dead(self) -> Iterator[StoredJob]:
        """Every dead letter, oldest first."""
        return self._load(_DEAD)

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
                self._replace(_JOBS, removed, added)
                self._replace(_DEAD, unburied, buried)
                db.execute("COMMIT")
            except BaseException:
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

    def close(self) -> None:
        """Close the database file."""
        self._db.close()
