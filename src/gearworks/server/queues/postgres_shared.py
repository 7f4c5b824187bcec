"""The PostgreSQL queue store shared by the nodes of a cluster (``--cluster``): each job row carries its ``owner``
node; ``<table>_nodes`` holds one lease row per node (address, process, expiry by PostgreSQL's clock).

How this works: every ``apply`` first takes a ``FOR KEY SHARE`` lock on this node's lease row and writes nothing
(``LeaseLost``) if the row is gone; an adopter deletes the lease row of an expired node (``FOR UPDATE SKIP
LOCKED``, so a second adopter passes by instead of waiting) and, in the same transaction, moves the node's rows to
itself. The lease row lock orders the two: a batch committed before the adoption is adopted with the rest, one
started after it writes nothing. Renewals update a non-key column, which does not conflict with the writers' key
share locks. Every table is a shared advisory lock on its name, so a single-server owner (exclusive) and a cluster
cannot use one table at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

import psycopg

from gearworks.errors import QueueError
from gearworks.server.queues.base import LeaseLost, Member, Membership, StoredJob, node_is_gone
from gearworks.server.queues.postgres import _COLUMNS, _TABLE, PostgresStore, _replace

__all__ = ["SharedPostgresStore"]

_SHARED_LOCK = "pg_try_advisory_lock_shared(hashtext('gearworks'), hashtext(%s))"
_NOW = "extract(epoch from clock_timestamp())"
_NODES = """
CREATE TABLE IF NOT EXISTS {table}_nodes (
    node TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    process TEXT NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    lease_timeout DOUBLE PRECISION NOT NULL
);
"""
_SEQ_AND_COLUMNS = "seq, " + _COLUMNS


def _jobs(rows: list[tuple[object, ...]]) -> list[StoredJob]:
    """Rows of (seq, columns...) as jobs, oldest first (UPDATE ... RETURNING has no order)."""
    return [StoredJob(*row[1:]) for row in sorted(rows, key=lambda row: cast(int, row[0]))]  # type: ignore[arg-type]


class SharedPostgresStore(PostgresStore):
    """Background jobs of a cluster's nodes in one PostgreSQL table, this node's rows and lease its own.

    Args:
        url: a libpq URL or conninfo string.
        membership: this node.
        table: the table of the cluster's jobs.
        timeout: seconds any statement, lock wait or socket may take; also PostgreSQL's
            ``idle_in_transaction_session_timeout``, so a node frozen inside a transaction cannot block adopters.
    """

    def __init__(self, url: str, membership: Membership, table: str = "gearworks_jobs", timeout: float = 5.0) -> None:
        self.membership = membership
        self._node = membership.node
        self._nodes = f"{table}_nodes"
        super().__init__(url, table=table, timeout=timeout, owner=None)

    def _prepare(self, db: psycopg.Connection[tuple[object, ...]]) -> None:
        """Share the table with the cluster; create it, the owner columns and the lease table once (the DDL is
        serialised by a transaction-level advisory lock: concurrent CREATE TABLE IF NOT EXISTS can collide)."""
        self._claim(db, _SHARED_LOCK)
        db.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %s, false)", (str(int(self.timeout * 1000)),)
        )
        tables = (self.table, f"{self.table}_dead")
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext('gearworks-ddl'), hashtext(%s))", (self.table,))
            ddl = "".join(_TABLE.format(table=table) for table in tables) + _NODES.format(table=self.table)
            db.execute(ddl.encode())
            for table in tables:
                has_owner = db.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = 'owner'",
                    (table,),
                ).fetchone()
                if has_owner is None:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN owner TEXT NOT NULL DEFAULT ''".encode())

    def link(self) -> SharedPostgresStore:
        """A second connection for the lease thread."""
        return SharedPostgresStore(self.url, self.membership, table=self.table, timeout=self.timeout)

    def load(self) -> Iterator[StoredJob]:
        """This node's stored jobs, oldest first."""
        return self._load(self.table, " WHERE owner = %s", (self._node,))

    def load_dead(self) -> Iterator[StoredJob]:
        """This node's dead letters, oldest first."""
        return self._load(f"{self.table}_dead", " WHERE owner = %s", (self._node,))

    def _write(
        self,
        cursor: psycopg.Cursor[tuple[object, ...]],
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob],
        unburied: Sequence[bytes],
    ) -> None:
        """Hold this node's lease row for the transaction (LeaseLost if it is gone), then write as its owner."""
        membership = self.membership
        cursor.execute(
            f"SELECT 1 FROM {self._nodes} WHERE node = %s AND process = %s FOR KEY SHARE".encode(),
            (membership.node, membership.process),
        )
        if cursor.fetchone() is None:
            raise LeaseLost(f"PostgreSQL queue {self.url}: node {membership.node} has no lease (adopted by a peer)")
        _replace(cursor, self.table, removed, added, self._node)
        _replace(cursor, f"{self.table}_dead", unburied, buried, self._node)

    def _run(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        """One statement in its own transaction; its rows.

        Raises:
            QueueError: PostgreSQL failed or did not answer.
        """
        db = self._connection()
        try:
            with self._watchdog.guard(db.fileno()), db.transaction():
                cursor = db.execute(sql.encode(), params)
                return cursor.fetchall() if cursor.description is not None else [(cursor.rowcount,)]
        except psycopg.Error as exc:
            self._failed(db, exc)
            raise QueueError(f"PostgreSQL queue {self.url}: {exc}") from exc

    def renew(self, *, join: bool = False) -> bool:
        """Extend (``join``: create) this node's lease."""
        me = self.membership
        if not join:
            rows = self._run(
                f"UPDATE {self._nodes} SET expires = {_NOW} + %s, address = %s WHERE node = %s AND process = %s",
                (me.lease_timeout, me.address, me.node, me.process),
            )
            return rows[0][0] == 1
        held = self._run(f"SELECT process, expires - {_NOW} FROM {self._nodes} WHERE node = %s", (me.node,))
        if held:
            process, left = str(held[0][0]), float(held[0][1])  # type: ignore[arg-type]
            if left > 0 and process != me.process and not node_is_gone(process):
                raise QueueError(
                    f"PostgreSQL queue {self.url}: node id {me.node} is in use by a live server ({process}; its "
                    f"lease lasts {left:.1f} s more)"
                )
        self._run(
            f"INSERT INTO {self._nodes} VALUES (%s, %s, %s, {_NOW} + %s, %s) ON CONFLICT (node) DO UPDATE SET "
            "address = EXCLUDED.address, process = EXCLUDED.process, expires = EXCLUDED.expires, "
            "lease_timeout = EXCLUDED.lease_timeout",
            (me.node, me.address, me.process, me.lease_timeout, me.lease_timeout),
        )
        return True

    def expired(self) -> list[str]:
        """Peers past their lease by more than their lease timeout."""
        rows = self._run(
            f"SELECT node FROM {self._nodes} WHERE node <> %s AND {_NOW} > expires + lease_timeout ORDER BY node",
            (self._node,),
        )
        return [str(row[0]) for row in rows]

    def adopt(self, node: str) -> tuple[list[StoredJob], list[StoredJob]]:
        """Delete ``node``'s expired lease and move its rows to this node, in one transaction."""
        db = self._connection()
        try:
            with self._watchdog.guard(db.fileno()), db.transaction():
                gone = db.execute(
                    f"DELETE FROM {self._nodes} WHERE node IN (SELECT node FROM {self._nodes} WHERE node = %s AND "
                    f"{_NOW} > expires + lease_timeout FOR UPDATE SKIP LOCKED) RETURNING node".encode(),
                    (node,),
                ).fetchall()
                if not gone:
                    return [], []
                moved = []
                for table in (self.table, f"{self.table}_dead"):
                    rows = db.execute(
                        f"UPDATE {table} SET owner = %s WHERE owner = %s RETURNING {_SEQ_AND_COLUMNS}".encode(),
                        (self._node, node),
                    ).fetchall()
                    moved.append(_jobs(rows))
                return moved[0], moved[1]
        except psycopg.Error as exc:
            self._failed(db, exc)
            raise QueueError(f"PostgreSQL queue {self.url}: adopting {node} failed: {exc}") from exc

    def locate(self, handle: bytes) -> tuple[str, str] | None:
        """The owner of ``handle`` and its address ('' when it has no lease)."""
        rows = self._run(
            f"SELECT j.owner, coalesce(n.address, '') FROM {self.table} j LEFT JOIN {self._nodes} n "
            "ON n.node = j.owner WHERE j.handle = %s",
            (handle,),
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def members(self) -> list[Member]:
        """Every node with a lease, with the number of jobs it owns."""
        rows = self._run(
            f"SELECT n.node, n.address, n.expires - {_NOW}, n.lease_timeout, coalesce(c.jobs, 0) "
            f"FROM {self._nodes} n LEFT JOIN (SELECT owner, count(*) AS jobs FROM {self.table} GROUP BY owner) c "
            "ON c.owner = n.node ORDER BY n.node",
            (),
        )
        return [
            Member(str(node), str(address), float(cast(float, left)), float(cast(float, timeout)), cast(int, jobs))
            for node, address, left, timeout, jobs in rows
        ]
