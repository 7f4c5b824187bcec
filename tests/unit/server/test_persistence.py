"""Group commit against a real SQLite store: batches merge under load, tokens come back only once written, a
failed write hands its tokens back with the error and keeps its other changes for later, and closing never waits
longer than it is told for a store that hangs."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from gearworks.errors import QueueError
from gearworks.server.persistence import RETRY, GroupCommit
from gearworks.server.queues.base import StoredJob
from gearworks.server.queues.sqlite import SQLiteStore


def job(n: int) -> StoredJob:
    return StoredJob(b"H:t:%d" % n, b"f", b"u%d" % n, b"w", 1)


def stored(path: Path, dead: bool = False) -> list[bytes]:
    """The handles in the SQLite queue at ``path`` (opened unclaimed, after the commit closed its store)."""
    store = SQLiteStore(path)
    try:
        return [j.handle for j in (store.load_dead() if dead else store.load())]
    finally:
        store.close()


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
        await commit.close(5)

    asyncio.run(run())
    assert written == [([0], None), (list(range(1, 100)), None), (["removed"], None)]
    assert stored(tmp_path / "q.db") == [b"H:t:%d" % n for n in range(100) if n != 5]


def test_a_failed_write_returns_its_tokens_with_the_error_and_later_writes_go_on(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    written: list[tuple[list[str], QueueError | None]] = []
    commit: GroupCommit[str]

    def on_written(tokens: list[str], error: QueueError | None) -> None:
        written.append((tokens, error))
        if error is not None and tokens:
            commit.stage([], [b"H:t:1"])  # as the board does: the lost job is dropped, cancelling its kept insert

    async def run() -> None:
        nonlocal commit
        commit = GroupCommit(store, on_written)
        with sqlite3.connect(tmp_path / "q.db") as other:
            other.execute("DROP TABLE gearworks_jobs")  # the backend loses its table under the server
        commit.stage([job(1)], [], ["lost"])
        await commit.flush()
        SQLiteStore(tmp_path / "q.db").close()  # the table is back
        commit.stage([job(2)], [], ["kept"])
        await commit.flush()
        await commit.close(5)

    asyncio.run(run())
    (lost, error), (kept, no_error) = [(tokens, error) for tokens, error in written if tokens]
    assert lost == ["lost"]
    assert isinstance(error, QueueError)
    assert "no such table" in str(error)
    assert (kept, no_error) == (["kept"], None)
    assert stored(tmp_path / "q.db") == [b"H:t:2"]


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
        await commit.close(5)

    asyncio.run(run())
    assert [j.handle for j in SQLiteStore(tmp_path / "q.db").load()] == [b"H:t:3"]
    assert stored(tmp_path / "q.db", dead=True) == [b"H:t:1"]


def test_removals_and_dead_letter_moves_that_failed_are_written_once_the_store_is_back(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db", timeout=0.2)
    written: list[QueueError | None] = []
    buried = StoredJob(b"H:t:2", b"f", b"u2", b"w", 1, retries=3)

    async def run() -> None:
        commit: GroupCommit[str] = GroupCommit(store, lambda tokens, error: written.append(error))
        commit.stage([job(1), job(2), job(3)], [], ["created"])
        await commit.flush()
        locker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # the store is unwritable: every write times out
        commit.stage([], [b"H:t:1"])  # job 1 completed
        commit.stage([], [b"H:t:2"], buried=[buried])  # job 2 became a dead letter
        await commit.flush()
        assert commit.kept == 3
        locker.execute("ROLLBACK")
        locker.close()
        await asyncio.sleep(RETRY + 0.3)  # retried after RETRY seconds with nothing else staged
        await commit.flush()
        assert commit.kept == 0
        await commit.close(5)

    asyncio.run(run())
    assert written[0] is None
    assert all(isinstance(error, QueueError) for error in written[1:-1])
    assert written[-1] is None
    assert stored(tmp_path / "q.db") == [b"H:t:3"]
    assert stored(tmp_path / "q.db", dead=True) == [b"H:t:2"]


def test_closing_gives_up_on_a_hung_store_after_its_wait(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db", timeout=30)  # a lock wait far longer than a shutdown may take
    locker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)

    async def run() -> float:
        commit: GroupCommit[str] = GroupCommit(store, lambda tokens, error: None)
        locker.execute("BEGIN EXCLUSIVE")
        commit.stage([job(1)], [], ["hung"])
        await asyncio.sleep(0.1)
        start = time.monotonic()
        await commit.close(0.5)
        return time.monotonic() - start

    try:
        assert asyncio.run(run()) < 1.0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
