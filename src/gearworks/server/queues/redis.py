"""Redis queue store (the ``redis`` library): each job is one hash field, its order a sorted-set score; a batch is
one MULTI/EXEC. Dead letters are kept the same way under ``{prefix}:dead`` and ``{prefix}:dead_order``. Durability is
Redis's own: with ``appendonly yes`` and ``appendfsync always`` an acknowledged batch survives a Redis crash; with
the default ``appendfsync everysec`` up to about a second can be lost. Every command waits at most ``timeout``
seconds (a stopped Redis gives QueueError, not a hang); a dropped connection is reopened by the next command.
One server per prefix: the owner keeps ``{prefix}:owner`` (its ``node_id``) set with a short expiry, renewed from the
writer thread; another server finding it refuses to start."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gearworks.errors import QueueError
from gearworks.server.queues.base import StoredJob, node_is_gone
from gearworks.server.queues.records import pack_job, unpack_job

__all__ = ["RedisStore"]

log = logging.getLogger("gearworks.server.queue")

_LOAD_BATCH = 10_000
OWNER_TTL = 6.0
"""Seconds an owner key outlives its last renewal: how long a server on another host that died blocks a new owner."""
_RENEW_EVERY = 2.0
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return holder
"""
"""Extend our claim, or take it again if it lapsed (Redis was down longer than OWNER_TTL); else name the holder."""


class RedisStore:
    """Background jobs in a Redis database, under ``prefix``."""

    durable = True

    def __init__(
        self, url: str, prefix: str = "gearworks", timeout: float = 5.0, owner: str | None = None, keys: str = ""
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._jobs = f"{prefix}:jobs{keys}"
        self._order = f"{prefix}:order{keys}"
        self._dead = f"{prefix}:dead{keys}"
        self._dead_order = f"{prefix}:dead_order{keys}"
        self._owner_key = f"{prefix}:owner"
        self._owner = owner
        self._owned = owner is not None
        self._renew_at = 0.0
        # One retry, at once and only after a dropped connection (Redis restarted): redis-py's default of ten
        # with backoff, on timeouts too, would hold a write for minutes against a stopped Redis.
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry)
        try:
            self._start()
        except (redis.RedisError, QueueError) as exc:
            self._redis.close()
            if isinstance(exc, QueueError):
                raise
            raise QueueError(f"cannot reach Redis queue {url}: {exc}") from exc

    def _start(self) -> None:
        """Claim the prefix (with an owner) and read where the order sequences stand."""
        if self._owner is not None:
            self._claim(self._owner)
        self._seq = self._top(self._order)
        self._dead_seq = self._top(self._dead_order)

    def _claim(self, owner: str) -> None:
        """Set the owner key, or take it over from a process of this host that is gone; refuse a live owner."""
        ttl = int(OWNER_TTL * 1000)
        while not self._redis.set(self._owner_key, owner, nx=True, px=ttl):
            holder = cast(bytes | None, self._redis.get(self._owner_key))
            if holder is None:
                continue  # expired in between
            name = holder.decode(errors="replace")
            if not node_is_gone(name):
                raise QueueError(
                    f"Redis queue {self.url} prefix {self.prefix} is in use by another server ({name}; its claim "
                    f"lapses {OWNER_TTL:g} s after it stops)"
                )
            log.warning("Redis queue %s prefix %s: taking over from %s, which is gone", self.url, self.prefix, name)
            self._redis.delete(self._owner_key)
        self._renew_at = time.monotonic() + _RENEW_EVERY

    def _keep_claim(self) -> None:
        """Renew the owner key when due; stop writing (QueueError) while another server holds it.

        Raises:
            redis.RedisError: Redis did not answer.
            QueueError: another server owns the prefix.
        """
        if self._owner is None or (self._owned and time.monotonic() < self._renew_at):
            return
        holder = self._redis.eval(_RENEW, 1, self._owner_key, self._owner, int(OWNER_TTL * 1000))
        if holder == 1:
            if not self._owned:
                log.warning("Redis queue %s prefix %s: owner again, writing", self.url, self.prefix)
            self._owned = True
            self._renew_at = time.monotonic() + _RENEW_EVERY
            return
        if self._owned:
            log.error(
                "Redis queue %s prefix %s: taken by another server (%r); not writing", self.url, self.prefix, holder
            )
        self._owned = False
        raise QueueError(f"Redis queue {self.url} prefix {self.prefix} is owned by another server ({holder!r})")

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
                self._keep_claim()  # a long replay must not let the claim lapse
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
            self._keep_claim()
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

    def heartbeat(self) -> None:
        """Renew the owner key when due (Redis being down is the next write's error, not this one's)."""
        try:
            self._keep_claim()
        except (redis.RedisError, QueueError) as exc:
            log.debug("Redis queue %s heartbeat: %s", self.url, exc)

    def close(self) -> None:
        """Give up the claim and close the connection pool."""
        if self._owner is not None and self._owned:
            try:
                self._redis.eval(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
                    1, self._owner_key, self._owner,
                )  # fmt: skip
            except redis.RedisError as exc:
                log.warning("Redis queue %s: owner key not released (%s); it lapses in %g s", self.url, exc, OWNER_TTL)
        self._redis.close()
