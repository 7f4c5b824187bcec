"""The Redis queue store shared by the nodes of a cluster (``--cluster``): each node's jobs under its own keys
(``{prefix}:jobs:{node}``, ``{prefix}:order:{node}`` and the dead-letter pair), leases in the hash
``{prefix}:leases`` (node → JSON: expiry and timeout in ms by Redis's clock, address, process), one sequence
``{prefix}:seq`` ordering every node's jobs.

How this works: writes, renewals and adoptions are Lua scripts, so each is atomic in Redis: a batch is written only
while this node's lease names this process (else ``LeaseLost``), and an adoption deletes an expired lease and moves
the node's jobs (with their sequence numbers, so order is kept) in one step. The cluster claims
``{prefix}:owner`` as ``cluster:NAME`` with the single-server key's expiry rules, so a single-server owner and a
cluster cannot share a prefix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast

import redis

from gearworks.errors import QueueError
from gearworks.server.queues.base import LeaseLost, Member, Membership, StoredJob, node_is_gone
from gearworks.server.queues.records import pack_job, unpack_job
from gearworks.server.queues.redis import RedisStore

__all__ = ["SharedRedisStore"]

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
_APPLY = """
local lease = redis.call('HGET', KEYS[1], ARGV[1])
if not lease or cjson.decode(lease).process ~= ARGV[2] then return redis.error_reply('LEASELOST') end
local i = 3
local function section(records, order)
  local count = tonumber(ARGV[i]) i = i + 1
  for j = i, i + count - 1 do redis.call('HDEL', records, ARGV[j]) redis.call('ZREM', order, ARGV[j]) end
  i = i + count
  count = tonumber(ARGV[i]) i = i + 1
  if count > 0 then
    local base = redis.call('INCRBY', KEYS[6], count) - count
    for j = 0, count - 1 do
      redis.call('HSET', records, ARGV[i + 2 * j], ARGV[i + 2 * j + 1])
      redis.call('ZADD', order, base + j + 1, ARGV[i + 2 * j])
    end
    i = i + 2 * count
  end
end
section(KEYS[2], KEYS[3])
section(KEYS[4], KEYS[5])
return 1
"""
"""KEYS: leases, jobs, order, dead, dead order, seq. ARGV: node, process, then per table (jobs, dead letters):
the number of removals, the handles, the number of additions, (handle, record) pairs."""
_RENEW = (
    _NOW
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[5] == 'renew' then
  if not old or cjson.decode(old).process ~= ARGV[2] then return 0 end
elseif old and ARGV[5] == 'join' then
  local held = cjson.decode(old)
  if held.process ~= ARGV[2] and held.expires > now then return {held.process, tostring(held.expires - now)} end
end
local ms = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1],
  cjson.encode({expires = now + ms, timeout = ms, address = ARGV[3], process = ARGV[2]}))
return 1
"""
)
"""KEYS: leases. ARGV: node, process, address, timeout ms, mode (renew: only our own lease; join: unless a live
other process holds it, returned as {process, ms left}; force: whatever holds it)."""
_EXPIRED = (
    _NOW
    + """
local found = {}
local leases = redis.call('HGETALL', KEYS[1])
for j = 1, #leases, 2 do
  local lease = cjson.decode(leases[j + 1])
  if leases[j] ~= ARGV[1] and now > lease.expires + lease.timeout then found[#found + 1] = leases[j] end
end
return found
"""
)
_ADOPT = (
    _NOW
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return {} end
local lease = cjson.decode(old)
if now <= lease.expires + lease.timeout then return {} end
redis.call('HDEL', KEYS[1], ARGV[1])
local out = {}
for pair = 0, 1 do
  local records, order = KEYS[2 + 2 * pair], KEYS[3 + 2 * pair]
  local mine, my_order = KEYS[6 + 2 * pair], KEYS[7 + 2 * pair]
  local members = redis.call('ZRANGE', order, 0, -1, 'WITHSCORES')
  local moved = {}
  for j = 1, #members, 2 do
    local record = redis.call('HGET', records, members[j])
    if record then
      redis.call('HSET', mine, members[j], record)
      redis.call('ZADD', my_order, members[j + 1], members[j])
      moved[#moved + 1] = members[j]
      moved[#moved + 1] = record
    end
  end
  redis.call('DEL', records, order)
  out[pair + 1] = moved
end
return out
"""
)
"""KEYS: leases, the dead node's four keys, this node's four keys. ARGV: the dead node. Returns {jobs, dead
letters} as flat (handle, record) lists, oldest first; {} when the lease is live or gone."""


class SharedRedisStore(RedisStore):
    """Background jobs of a cluster's nodes in one Redis database under ``prefix``, this node's under its keys."""

    def __init__(self, url: str, membership: Membership, prefix: str = "gearworks", timeout: float = 5.0) -> None:
        self.membership = membership
        self._leases = f"{prefix}:leases"
        self._seq_key = f"{prefix}:seq"
        super().__init__(url, prefix=prefix, timeout=timeout, owner=f"cluster:{membership.cluster}",
                         keys=f":{membership.node}")  # fmt: skip
        self._apply = self._redis.register_script(_APPLY)
        self._renew = self._redis.register_script(_RENEW)
        self._expired = self._redis.register_script(_EXPIRED)
        self._adopt = self._redis.register_script(_ADOPT)

    def _start(self) -> None:
        """Claim the prefix for the cluster (refused while a single server owns it)."""
        self._renew_at = 0.0  # due now
        self._keep_claim()

    def _keys(self, node: str) -> list[str]:
        prefix = self.prefix
        return [f"{prefix}:{kind}:{node}" for kind in ("jobs", "order", "dead", "dead_order")]

    def link(self) -> SharedRedisStore:
        """A second connection pool for the lease thread."""
        return SharedRedisStore(self.url, self.membership, prefix=self.prefix, timeout=self.timeout)

    def apply(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Write the batch as this node's, in one script (LeaseLost once a peer adopted this node)."""
        args: list[bytes | str | int] = [self.membership.node, self.membership.process]
        for gone, new in ((removed, added), (unburied, buried)):
            args.append(len(gone))
            args.extend(gone)
            args.append(len(new))
            for job in new:
                args.append(job.handle)
                args.append(pack_job(job))
        keys = [self._leases, self._jobs, self._order, self._dead, self._dead_order, self._seq_key]
        try:
            self._keep_claim()
            self._apply(keys=keys, args=args)
        except redis.ResponseError as exc:
            if "LEASELOST" in str(exc):
                raise LeaseLost(f"Redis queue {self.url}: node {self.membership.node} has no lease") from exc
            raise QueueError(f"Redis queue {self.url} write failed: {exc}") from exc
        except redis.RedisError as exc:
            raise QueueError(f"Redis queue {self.url} write failed: {exc}") from exc

    def _call(self, script: redis.commands.core.Script, keys: list[str], args: list[str | int]) -> object:
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise QueueError(f"Redis queue {self.url}: {exc}") from exc

    def renew(self, *, join: bool = False) -> bool:
        """Extend (``join``: create) this node's lease."""
        me = self.membership
        args: list[str | int] = [me.node, me.process, me.address, int(me.lease_timeout * 1000)]
        result = self._call(self._renew, [self._leases], [*args, "join" if join else "renew"])
        if isinstance(result, list):
            process, left = (part.decode() for part in cast(list[bytes], result))
            if not node_is_gone(process):
                raise QueueError(
                    f"Redis queue {self.url}: node id {me.node} is in use by a live server ({process}; its lease "
                    f"lasts {int(left) / 1000:.1f} s more)"
                )
            result = self._call(self._renew, [self._leases], [*args, "force"])
        return result == 1

    def expired(self) -> list[str]:
        """Peers past their lease by more than their lease timeout."""
        found = cast(list[bytes], self._call(self._expired, [self._leases], [self.membership.node]))
        return sorted(node.decode() for node in found)

    def adopt(self, node: str) -> tuple[list[StoredJob], list[StoredJob]]:
        """Move ``node``'s jobs and dead letters to this node and drop its lease, in one script."""
        keys = [self._leases, *self._keys(node), *self._keys(self.membership.node)]
        result = cast(list[list[bytes]], self._call(self._adopt, keys, [node]))
        if not result:
            return [], []
        jobs, dead = ([unpack_job(flat[j], flat[j + 1]) for j in range(0, len(flat), 2)] for flat in result)
        return jobs, dead

    def _leased(self) -> dict[str, dict[str, object]]:
        try:
            leases = cast(dict[bytes, bytes], self._redis.hgetall(self._leases))
        except redis.RedisError as exc:
            raise QueueError(f"Redis queue {self.url}: {exc}") from exc
        return {node.decode(): json.loads(value) for node, value in sorted(leases.items())}

    def locate(self, handle: bytes) -> tuple[str, str] | None:
        """The node whose jobs hold ``handle``, and its address."""
        leases = self._leased()
        pipe = self._redis.pipeline(transaction=False)
        for node in leases:
            pipe.hexists(self._keys(node)[0], handle)
        try:
            found = pipe.execute()
        except redis.RedisError as exc:
            raise QueueError(f"Redis queue {self.url}: {exc}") from exc
        for (node, lease), here in zip(leases.items(), found, strict=True):
            if here:
                return node, str(lease["address"])
        return None

    def members(self) -> list[Member]:
        """Every node with a lease, with the number of jobs it owns."""
        leases = self._leased()
        pipe = self._redis.pipeline(transaction=False)
        pipe.time()
        for node in leases:
            pipe.hlen(self._keys(node)[0])
        try:
            (seconds, micros), *counts = pipe.execute()
        except redis.RedisError as exc:
            raise QueueError(f"Redis queue {self.url}: {exc}") from exc
        now = seconds * 1000 + micros // 1000
        return [
            Member(node, str(lease["address"]), (float(lease["expires"]) - now) / 1000,  # type: ignore[arg-type]
                   float(lease["timeout"]) / 1000, int(count))  # type: ignore[arg-type]
            for (node, lease), count in zip(leases.items(), counts, strict=True)
        ]  # fmt: skip

    def close(self) -> None:
        """Close the connection pool; the cluster's claim on the prefix stays for the other nodes (it lapses once
        none renews it)."""
        self._redis.close()
