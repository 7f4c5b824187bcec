"""SQLite queue store (stdlib ``sqlite3``): the embedded durable choice. WAL journal with ``synchronous=FULL``, so
a batch is fsync'd before ``apply`` returns; one transaction per batch (group commit)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from gearworks.errors import QueueError
from gearworks.server.queues.base import StoredJob

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gearworks_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    handle BLOB NOT NULL UNIQUE,
    function BLOB NOT NULL,
    unique_key BLOB NOT NULL,
    workload BLOB NOT NULL,
    priority INTEGER NOT NULL,
    run_at REAL NOT NULL,
    reducer BLOB
);
CREATE TABLE IF NOT EXISTS gearworks_dead (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    handle BLOB NOT NULL UNIQUE,
    function BLOB NOT NULL,
    unique_key BLOB NOT NULL,
    workload BLOB NOT NULL,
    priority INTEGER NOT NULL,
    reducer BLOB,
    retries INTEGER NOT NULL
);
"""


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
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open SQLite queue {self.path}: {exc}") from exc

    def load(self) -> Iterator[StoredJob]:
        """Every stored job, oldest first."""
        try:
            rows = self._db.execute(
                "SELECT handle, function, unique_key, workload, priority, run_at, reducer FROM gearworks_jobs "
                "ORDER BY seq"
            )
            for handle, function, unique, workload, priority, run_at, reducer in rows:
                yield StoredJob(handle, function, unique, workload, priority, run_at, reducer)
        except sqlite3.Error as exc:
            raise QueueError(f"cannot read SQLite queue {self.path}: {exc}") from exc

    def load_dead(self) -> Iterator[StoredJob]:
        """Every dead letter, oldest first."""
        try:
            rows = self._db.execute(
                "SELECT handle, function, unique_key, workload, priority, reducer, retries FROM gearworks_dead "
                "ORDER BY seq"
            )
            for handle, function, unique, workload, priority, reducer, retries in rows:
                yield StoredJob(handle, function, unique, workload, priority, 0.0, reducer, retries)
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
                if removed:
                    db.executemany("DELETE FROM gearworks_jobs WHERE handle = ?", [(h,) for h in removed])
                if added:
                    db.executemany(
                        "INSERT OR REPLACE INTO gearworks_jobs "
                        "(handle, function, unique_key, workload, priority, run_at, reducer) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(j.handle, j.function, j.unique, j.workload, j.priority, j.when, j.reducer) for j in added],
                    )
                if unburied:
                    db.executemany("DELETE FROM gearworks_dead WHERE handle = ?", [(h,) for h in unburied])
                if buried:
                    db.executemany(
                        "INSERT OR REPLACE INTO gearworks_dead "
                        "(handle, function, unique_key, workload, priority, reducer, retries) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (d.handle, d.function, d.unique, d.workload, d.priority, d.reducer, d.retries)
                            for d in buried
                        ],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise QueueError(f"SQLite queue {self.path} write failed: {exc}") from exc

    def close(self) -> None:
        """Close the database file."""
        self._db.close()
