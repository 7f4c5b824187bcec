"""Group commit against a real SQLite store: batches merge under load, tokens come back only once written, and a
failed write hands its tokens back with the error."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gearworks.errors import QueueError
from gearworks.server.persistence import GroupCommit
from gearworks.server.queues.base import StoredJob
from gearworks.server.queues.sqlite import SQLiteStore


def job(n: int) -> StoredJob:
    return StoredJob(b"H:t:%d" % n, b"f", b"u%d" % n, b"w", 1)


def test_changes_staged_during_a_write_share_the_next_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    written: list[tuple[list[int], QueueError | None]] = []

    async def run() -> None:
        commit: GroupCommit[int] = GroupCommit(store, lambda tokens, error: written.append((tokens, error)))
        commit.stage([job(0)], [], [0])  # the writer is idle: this starts a transaction at once
        for n in range(1, 100):  # same loop turn, write in flight: all merged into the next batch
            commit.stage([job(n)], [], [n])
        assert commit.backlog == 100
        await commit.flush()
        assert commit.batches == 2
        assert commit.backlog == 0
        commit.stage([], [b"H:t:5"], ["removed"])  # type: ignore[list-item]
        await commit.flush()
        commit.close()

    asyncio.run(run())
    assert written == [([0], None), (list(range(1, 100)), None), (["removed"], None)]
    assert [j.handle for j in store.load()] == [b"H:t:%d" % n for n in range(100) if n != 5]
    store.close()


def test_a_failed_write_returns_its_tokens_with_the_error_and_later_writes_go_on(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    written: list[tuple[list[str], QueueError | None]] = []

    async def run() -> None:
        commit: GroupCommit[str] = GroupCommit(store, lambda tokens, error: written.append((tokens, error)))
        with sqlite3.connect(tmp_path / "q.db") as other:
            other.execute("DROP TABLE gearworks_jobs")  # the backend loses its table under the server
        commit.stage([job(1)], [], ["lost"])
        await commit.flush()
        SQLiteStore(tmp_path / "q.db").close()  # the table is back
        commit.stage([job(2)], [], ["kept"])
        await commit.flush()
        commit.close()

    asyncio.run(run())
    (lost, error), (kept, no_error) = written
    assert lost == ["lost"]
    assert isinstance(error, QueueError)
    assert "no such table" in str(error)
    assert (kept, no_error) == (["kept"], None)
    assert [j.handle for j in store.load()] == [b"H:t:2"]
    store.close()


def test_merged_batches_keep_the_last_change_of_each_handle(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    dead = StoredJob(b"H:t:3", b"f", b"u3", b"w", 1, retries=2)

    async def run() -> None:
        commit: GroupCommit[int] = GroupCommit(store, lambda tokens, error: None)
        commit.stage([job(1), job(3)], [])  # written at once; the rest merges into the next batch
        commit.stage([job(2)], [])
        commit.stage([], [b"H:t:2"])  # added and removed while staged: never written
        commit.stage([], [b"H:t:3"], buried=[dead])  # buried ...
        commit.stage([job(3)], [], unburied=[b"H:t:3"])  # ... and requeued
        commit.stage([], [b"H:t:1"], buried=[StoredJob(b"H:t:1", b"f", b"u1", b"w", 1, retries=2)])
        await commit.flush()
        assert commit.batches == 2
        commit.close()

    asyncio.run(run())
    assert list(store.load()) == [job(3)]
    assert [j.handle for j in store.load_dead()] == [b"H:t:1"]
    store.close()
