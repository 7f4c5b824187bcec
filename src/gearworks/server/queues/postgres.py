"""PostgreSQL queue store (psycopg 3): a table of jobs and one of dead letters, one transaction per batch, committed
with the server's ``synchronous_commit`` (on by default: the commit is fsync'd before ``apply`` returns)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg

from gearworks.errors import QueueError
from gearworks.server.queues.base import StoredJob

__all__ = ["PostgresStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq BIGSERIAL PRIMARY KEY,
    handle BYTEA NOT NULL UNIQUE,
    function BYTEA NOT NULL,
    unique_key BYTEA NOT NULL,
    workload BYTEA NOT NULL,
    priority SMALLINT NOT NULL,
    run_at DOUBLE PRECISION NOT NULL,
    reducer BYTEA
);
CREATE TABLE IF NOT EXISTS {table}_dead (
    seq BIGSERIAL PRIMARY KEY,
    handle BYTEA NOT NULL UNIQUE,
    function BYTEA NOT NULL,
    unique_key BYTEA NOT NULL,
    workload BYTEA NOT NULL,
    priority SMALLINT NOT NULL,
    reducer BYTEA,
    retries INTEGER NOT NULL
)
"""
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
            self._db.execute(_SCHEMA.format(table=table).encode())
        except psycopg.Error as exc:
            raise QueueError(f"cannot open PostgreSQL queue {url}: {exc}") from exc

    def load(self) -> Iterator[StoredJob]:
        """Every stored job, oldest first (streamed with a server-side cursor)."""
        query = (
            f"SELECT handle, function, unique_key, workload, priority, run_at, reducer FROM {self.table} ORDER BY seq"
        )
        try:
            with self._db.transaction(), self._db.cursor(name="gearworks_load") as cursor:
                cursor.execute(query.encode())
                for handle, function, unique, workload, priority, run_at, reducer in cursor:
                    yield StoredJob(handle, function, unique, workload, priority, run_at, reducer)
        except psycopg.Error as exc:
            raise QueueError(f"cannot read PostgreSQL queue {self.url}: {exc}") from exc

    def load_dead(self) -> list[StoredJob]:
        """Every dead letter, oldest first."""
        query = (
            f"SELECT handle, function, unique_key, workload, priority, reducer, retries FROM {self.table}_dead "
            "ORDER BY seq"
        )
        try:
            rows = self._db.execute(query.encode()).fetchall()
        except psycopg.Error as exc:
            raise QueueError(f"cannot read PostgreSQL queue {self.url}: {exc}") from exc
        return [
            StoredJob(handle, function, unique, workload, priority, 0.0, reducer, retries)
            for handle, function, unique, workload, priority, reducer, retries in rows
        ]

    def apply(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Delete ``removed`` and insert ``added`` (COPY for large batches), delete ``unburied`` and insert
        ``buried``, in one transaction."""
        rows = [(j.handle, j.function, j.unique, j.workload, j.priority, j.when, j.reducer) for j in added]
        columns = "(handle, function, unique_key, workload, priority, run_at, reducer)"
        try:
            with self._db.transaction(), self._db.cursor() as cursor:
                if removed:
                    cursor.execute(f"DELETE FROM {self.table} WHERE handle = ANY(%s)".encode(), (list(removed),))
                if len(rows) >= _COPY_THRESHOLD:
                    with cursor.copy(f"COPY {self.table} {columns} FROM STDIN".encode()) as copy:
                        for row in rows:
                            copy.write_row(row)
                elif rows:
                    cursor.executemany(
                        f"INSERT INTO {self.table} {columns} VALUES (%s, %s, %s, %s, %s, %s, %s)".encode(), rows
                    )
                if unburied:
                    cursor.execute(f"DELETE FROM {self.table}_dead WHERE handle = ANY(%s)".encode(), (list(unburied),))
                if buried:
                    cursor.executemany(
                        f"INSERT INTO {self.table}_dead "
                        "(handle, function, unique_key, workload, priority, reducer, retries) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s)".encode(),
                        [
                            (d.handle, d.function, d.unique, d.workload, d.priority, d.reducer, d.retries)
                            for d in buried
                        ],
                    )
        except psycopg.Error as exc:
            raise QueueError(f"PostgreSQL queue {self.url} write failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
