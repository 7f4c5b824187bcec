"""Each durable queue store against its real backend: batches written, read back in order after reopening, removed
jobs gone, and a backend that is down gives QueueError rather than a silent drop."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gearworks.errors import QueueError
from gearworks.server.queues.base import QueueStore, StoredJob
from gearworks.server.queues.memory import MemoryStore
from gearworks.server.queues.records import pack_job, unpack_job
from gearworks.server.queues.urls import open_store
from tests.servers import ServerProcess

_names = itertools.count()
StoreOpener = Callable[[], QueueStore]


def job(n: int, **changes: object) -> StoredJob:
    fields: dict[str, object] = {
        "handle": b"H:t:%d" % n,
        "function": b"f%d" % (n % 3),
        "unique": b"u%d" % n,
        "workload": b"payload\0with\0nuls-%d" % n,
        "priority": n % 3,
        "when": 0.0,
        "reducer": None,
    }
    fields.update(changes)
    return StoredJob(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> StoreOpener:
    """Opens the same store again and again (a fresh table, key prefix or file per test)."""
    name = f"t{next(_names)}"
    if request.param == "sqlite":
        return lambda: open_store(f"sqlite:///{tmp_path / 'queue.db'}")
    if request.param == "redis":
        redis: ServerProcess = request.getfixturevalue("redis_server")
        from gearworks.server.queues.redis import RedisStore

        return lambda: RedisStore(f"redis://127.0.0.1:{redis.port}/0", prefix=name)
    url: str = request.getfixturevalue("postgres_url")
    from gearworks.server.queues.postgres import PostgresStore

    return lambda: PostgresStore(url, table=name)


@pytest.fixture
def store(opener: StoreOpener) -> Iterator[QueueStore]:
    opened = opener()
    try:
        yield opened
    finally:
        opened.close()


def test_batches_survive_reopening_in_order(opener: StoreOpener, store: QueueStore) -> None:
    jobs = [job(n) for n in range(200)]
    store.apply(jobs[:150], [])
    store.apply(jobs[150:], [jobs[3].handle])
    store.apply([], [jobs[160].handle])
    store.close()
    reopened = opener()
    try:
        assert list(reopened.load()) == [j for j in jobs if j.handle not in (jobs[3].handle, jobs[160].handle)]
    finally:
        reopened.close()


def test_removals_apply_before_additions_of_the_same_handle(store: QueueStore) -> None:
    store.apply([job(1), job(2)], [])
    store.apply([job(1)], [job(1).handle])  # a dead letter requeued in the batch that buried it
    assert list(store.load()) == [job(2), job(1)]


def test_dead_letters_round_trip_and_survive_reopening(opener: StoreOpener, store: QueueStore) -> None:
    jobs = [job(n) for n in range(4)]
    dead = [job(n, retries=n + 1, reducer=b"r" if n == 2 else None) for n in range(10, 14)]
    store.apply(jobs, [])
    store.apply([], [jobs[0].handle, jobs[1].handle], buried=dead[:2])
    store.apply([], [], buried=dead[2:], unburied=[dead[0].handle])
    requeued = dataclasses.replace(dead[1], retries=0)
    store.apply([requeued], [], unburied=[dead[1].handle, b"H:t:999"])  # live again
    store.apply([], [], buried=[dead[0]], unburied=[dead[0].handle])  # buried again after a requeue
    store.close()
    reopened = opener()
    try:
        assert list(reopened.load()) == [jobs[2], jobs[3], requeued]
        assert list(reopened.load_dead()) == [dead[2], dead[3], dead[0]]
        reopened.apply([], [], unburied=[d.handle for d in dead])
        assert list(reopened.load_dead()) == []
    finally:
        reopened.close()


def test_every_field_round_trips(store: QueueStore) -> None:
    special = [
        job(1, when=1795373091.5, priority=0),
        job(2, reducer=b"myreducer", unique=b""),
        job(3, workload=b"", function=b""),
        job(4, workload=bytes(range(256)) * 64),
    ]
    store.apply(special, [])
    assert list(store.load()) == special


def test_removing_unknown_handles_is_harmless(store: QueueStore) -> None:
    store.apply([job(1)], [b"H:t:999"])
    store.apply([], [b"H:t:1", b"H:t:1"])
    assert list(store.load()) == []


def test_memory_store_keeps_nothing() -> None:
    store = open_store("memory")
    assert isinstance(store, MemoryStore)
    assert not store.durable
    store.apply([job(1)], [], buried=[job(2)])
    assert list(store.load()) == []
    assert list(store.load_dead()) == []


def test_sqlite_store_is_wal_with_full_sync(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/q.db")
    store.apply([job(1)], [])
    store.close()
    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_redis_down_gives_queue_error_and_recovers(redis_server: ServerProcess) -> None:
    from gearworks.server.queues.redis import RedisStore

    store = RedisStore(f"redis://127.0.0.1:{redis_server.port}/0", prefix="down", timeout=1)
    try:
        store.apply([job(1)], [])
        redis_server.stop()
        with pytest.raises(QueueError, match=r"Redis queue .* write failed"):
            store.apply([job(2)], [])
        redis_server.start()
        store.apply([job(3)], [])
        assert [j.handle for j in store.load()] == [b"H:t:1", b"H:t:3"]
    finally:
        store.close()


def test_unreachable_backends_raise_queue_error(tmp_path: Path) -> None:
    from tests.servers import free_port

    port = free_port()
    with pytest.raises(QueueError, match="cannot reach Redis queue"):
        open_store(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(QueueError, match="cannot open PostgreSQL queue"):
        open_store(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    with pytest.raises(QueueError, match="cannot open SQLite queue"):
        open_store(f"sqlite:///{tmp_path}/missing-dir/q.db")


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://", "nonsense"])
def test_bad_queue_urls_are_value_errors(url: str) -> None:
    with pytest.raises(ValueError, match="queue"):
        open_store(url)


def test_record_packing_round_trips_and_rejects_corruption() -> None:
    original = job(7, reducer=b"r", when=12.25)
    assert unpack_job(original.handle, pack_job(original)) == original
    dead = job(8, retries=3)
    assert unpack_job(dead.handle, pack_job(dead)) == dead
    with pytest.raises(QueueError, match="corrupt"):
        unpack_job(b"H:x:1", b"too\0few")


def test_table_in_the_url_names_the_servers_namespace(tmp_path: Path, postgres_url: str) -> None:
    import psycopg

    store = open_store(f"sqlite:///{tmp_path}/q.db?table=east")
    store.apply([job(1)], [])
    store.close()
    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("SELECT count(*) FROM east").fetchone() == (1,)
    store = open_store(f"{postgres_url}?table=east")
    try:
        store.apply([job(1)], [])
        with psycopg.connect(postgres_url) as db:
            assert db.execute("SELECT count(*) FROM east").fetchone() == (1,)
    finally:
        store.close()
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("DROP TABLE east, east_dead")
