"""Redis queue store (the ``redis`` library): each job is one hash field, its order a sorted-set score; a batch is
one MULTI/EXEC. Dead letters are kept the same way under ``{prefix}:dead`` and ``{prefix}:dead_order``. Durability is
Redis's own: with ``appendonly yes`` and ``appendfsync always`` an acknowledged batch survives a Redis crash; with
the default ``appendfsync everysec`` up to about a second can be lost."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

import redis

from gearworks.errors import QueueError
from gearworks.server.queues.base import StoredJob
from gearworks.server.queues.records import pack_job, unpack_job

__all__ = ["RedisStore"]

_LOAD_BATCH = 10_000


class RedisStore:
    """Background jobs in a Redis database, under ``prefix``."""

    durable = True

    def __init__(self, url: str, prefix: str = "gearworks", timeout: float = 5.0) -> None:
        self.url = url
        self._jobs = f"{prefix}:jobs"
        self._order = f"{prefix}:order"
        self._dead = f"{prefix}:dead"
        self._dead_order = f"{prefix}:dead_order"
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            self._seq = self._top(self._order)
            self._dead_seq = self._top(self._dead_order)
        except redis.RedisError as exc:
            raise QueueError(f"cannot reach Redis queue {url}: {exc}") from exc

    def _top(self, order: str) -> int:
        """The highest sequence number in the sorted set ``order`` (0 if empty)."""
        top = self._redis.zrange(order, -1, -1, withscores=True)
        return int(top[0][1]) if top else 0

    def load(self) -> Iterator[StoredJob]:
        """Every stored job, oldest first."""
        return self._load(self._jobs, self._order)

    def load_dead(self) -> Iterator[StoredJob]:
        """Every dead letter, oldest first."""
        return self._load(self._dead, self._dead_order)

    def _load(self, records_key: str, order: str) -> Iterator[StoredJob]:
        try:
            start = 0
            while True:
                handles = cast(list[bytes], self._redis.zrange(order, start, start + _LOAD_BATCH - 1))
                if not handles:
                    return
                records = cast(list[bytes | None], self._redis.hmget(records_key, handles))
                for handle, record in zip(handles, records, strict=True):
                    if record is not None:
                        yield unpack_job(handle, record)
                start += len(handles)
        except redis.RedisError as exc:
            raise QueueError(f"cannot read Redis queue {self.url}: {exc}") from exc

    def apply(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Delete ``removed`` and write ``added``, delete ``unburied`` and write ``buried``, in one MULTI/EXEC."""
        pipe = self._redis.pipeline(transaction=True)
        self._seq = self._replace(pipe, self._jobs, self._order, self._seq, removed=removed, added=added)
        self._dead_seq = self._replace(
            pipe, self._dead, self._dead_order, self._dead_seq, removed=unburied, added=buried
        )
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise QueueError(f"Redis queue {self.url} write failed: {exc}") from exc

    @staticmethod
    def _replace(
        pipe: redis.client.Pipeline,
        records: str,
        order: str,
        seq: int,
        *,
        removed: Sequence[bytes],
        added: Sequence[StoredJob],
    ) -> int:
        """Queue the deletion of ``removed`` then the writing of ``added`` (ordered after ``seq``) on ``pipe``;
        returns the new highest sequence number."""
        if removed:
            pipe.hdel(records, *removed)
            pipe.zrem(order, *removed)
        if added:
            pipe.hset(records, mapping={job.handle: pack_job(job) for job in added})
            pipe.zadd(order, {job.handle: seq + 1 + i for i, job in enumerate(added)})
        return seq + len(added)

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
