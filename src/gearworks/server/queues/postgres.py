"""PostgreSQL queue store (psycopg 3): a table of jobs and one of dead letters, one transaction per batch, committed
with the server's ``synchronous_commit`` (on by default: the commit is fsync'd before ``apply`` returns)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg

from gearworks.errors import QueueError
from gearworks.server.queues.base import StoredJob

__all__ = ["PostgresStore"]

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


def _row(job: StoredJob) -> tuple[object, ...]:
    return (job.handle, job.function, job.unique, job.workload, job.priority, job.when, job.reducer, job.retries)


_COPY_THRESHOLD = 64


class PostgresStore:
    """Background jobs in a PostgreSQL table."""

    durable = True

    def __init__(self, url: str, table: str = "gearworks_jobs", timeout: float = 5.0) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.url = url
        self.table = table
        try:
            self._db = psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True)
            self._db.execute((_TABLE.format(table=table) + _TABLE.format(table=f"{table}_dead")).encode())
        except psycopg.Error as exc:
            raise QueueError(f"cannot open PostgreSQL queue {url}: {exc}") from exc

    def load(self) -> Iterator[StoredJob]:
        """Every stored job, oldest first (streamed with a server-side cursor)."""
        return self._load(self.table)

    def load_dead(self) -> Iterator[StoredJob]:
        """Every dead letter, oldest first."""
        return self._load(f"{self.table}_dead")

    def _load(self, table: str) -> Iterator[StoredJob]:
        try:
            with self._db.transaction(), self._db.cursor(name="gearworks_load") as cursor:
                cursor.execute(f"SELECT {_COLUMNS} FROM {table} ORDER BY seq".encode())
                for row in cursor:
                    yield StoredJob(*row)
        except psycopg.Error as exc:
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
        try:
            with self._db.transaction(), self._db.cursor() as cursor:
                self._replace(cursor, self.table, removed, added)
                self._replace(cursor, f"{self.table}_dead", unburied, buried)
        except psycopg.Error as exc:
            raise QueueError(f"PostgreSQL queue {self.url} write failed: {exc}") from exc

    @staticmethod
    def _replace(cursor: psycopg.Cursor[tuple[object, ...]], table: str, removed: Sequence[bytes],
                 added: Sequence[StoredJob]) -> None:  # fmt: skip
        if removed:
            cursor.execute(f"DELETE FROM {table} WHERE handle = ANY(%s)".encode(), (list(removed),))
        if len(added) >= _COPY_THRESHOLD:
            with cursor.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN".encode()) as copy:
                for job in added:
                    copy.write_row(_row(job))
        elif added:
            values = ", ".join(["%s"] * 8)
            cursor.executemany(f"INSERT INTO {table} ({_COLUMNS}) VALUES ({values})".encode(), map(_row, added))

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
