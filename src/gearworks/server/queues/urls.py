"""Choosing a queue store from ``--queue URL``: ``memory`` (or gearmand's ``builtin``), ``sqlite:///path``,
``redis://host:port/db``, ``postgresql://...``; ``?table=NAME`` (SQL) or ``?prefix=NAME`` (Redis) picks the table or
key prefix of this server's jobs. Drivers for Redis and PostgreSQL are imported only when asked for. A cluster's
nodes (``membership``) share a Redis or PostgreSQL store, by default under ``gearworks_<cluster>`` (table) or
``gearworks:<cluster>`` (prefix)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from gearworks.server.queues.base import Membership, QueueStore, SharedStore
from gearworks.server.queues.memory import MemoryStore

__all__ = ["open_shared_store", "open_store", "store_kind"]

_KINDS = {
    "memory": "memory", "builtin": "memory", "": "memory", "sqlite": "sqlite",
    "redis": "redis", "rediss": "redis", "unix": "redis", "postgresql": "postgres", "postgres": "postgres",
}  # fmt: skip
_NAME_PARAMETER = {"sqlite": "table", "redis": "prefix", "postgres": "table"}


def store_kind(url: str) -> str:
    """``memory``, ``sqlite``, ``redis`` or ``postgres``: which backend ``url`` names.

    Raises:
        ValueError: an unknown scheme.
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url or url.startswith("sqlite:") else url.lower()
    kind = _KINDS.get(scheme)
    if kind is None:
        raise ValueError(
            f"unknown queue {url!r}: expected memory, sqlite:///PATH, redis://HOST:PORT/DB or postgresql://..."
        )
    return kind


def _take_name(url: str, parameter: str) -> tuple[str, str | None]:
    """``url`` without its ``parameter`` query argument, and that argument's value (None if absent). The rest of
    the URL is kept as written (``urlunsplit`` would fold ``sqlite:////abs`` into ``sqlite://abs``)."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    values = [value for key, value in pairs if key == parameter]
    if not values:
        return url, None
    rest = urlencode([(key, value) for key, value in pairs if key != parameter])
    return base + ("?" + rest if rest else ""), values[-1]


def open_store(url: str, *, name: str | None = None, timeout: float = 5.0, owner: str | None = None) -> QueueStore:
    """Open the store ``url`` names.

    Args:
        url: the queue URL.
        name: the table (SQL) or key prefix (Redis) of this server's jobs; overrides the URL's ``?table=`` /
            ``?prefix=``; the store's default when neither is given.
        timeout: seconds any store call may take before it fails with QueueError.
        owner: the server claiming the store (``node_id()``); None opens it unclaimed.

    Raises:
        ValueError: an unknown scheme, a missing path, a bad table name.
        QueueError: the backend could not be opened or reached, or another live server owns it.
    """
    kind = store_kind(url)
    if kind == "memory":
        return MemoryStore()
    url, given = _take_name(url, _NAME_PARAMETER[kind])
    name = name or given
    if kind == "sqlite":
        path = url.split(":", 1)[1]
        path = path[2:] if path.startswith("//") else path  # sqlite:///abs/path and sqlite:relative/path
        if not path:
            raise ValueError(f"no database path in queue URL {url!r} (expected sqlite:///path/to/queue.db)")
        from gearworks.server.queues.sqlite import SQLiteStore

        return SQLiteStore(path, timeout=timeout, owner=owner, **({"table": name} if name else {}))
    if kind == "redis":
        from gearworks.server.queues.redis import RedisStore

        return RedisStore(url, timeout=timeout, owner=owner, **({"prefix": name} if name else {}))
    from gearworks.server.queues.postgres import PostgresStore

    return PostgresStore(url, timeout=timeout, owner=owner, **({"table": name} if name else {}))


def open_shared_store(
    url: str, membership: Membership, *, name: str | None = None, timeout: float = 5.0
) -> SharedStore:
    """Open the store ``url`` names for a node of a cluster (not yet joined: the lease thread joins).

    Args:
        url: a ``redis://`` or ``postgresql://`` URL (or a libpq conninfo string with ``name`` for the table).
        membership: this node.
        name: the table or key prefix (default ``gearworks_<cluster>`` / ``gearworks:<cluster>``).
        timeout: seconds any store call may take.

    Raises:
        ValueError: a store that cannot be shared (memory, SQLite) or an unknown scheme.
        QueueError: the backend could not be reached, or a single server owns the namespace.
    """
    kind = "postgres" if "://" not in url and "=" in url else store_kind(url)
    if kind in ("memory", "sqlite"):
        raise ValueError(
            f"--cluster needs a queue every node reaches: redis://... or postgresql://..., not {kind} ({url!r}); "
            "an SQLite file or the memory queue belongs to one server"
        )
    if kind != "postgres" or "://" in url:
        url, given = _take_name(url, _NAME_PARAMETER[kind])
        name = name or given
    if kind == "redis":
        from gearworks.server.queues.redis_shared import SharedRedisStore

        return SharedRedisStore(url, membership, prefix=name or f"gearworks:{membership.cluster}", timeout=timeout)
    from gearworks.server.queues.postgres_shared import SharedPostgresStore

    return SharedPostgresStore(url, membership, table=name or f"gearworks_{membership.cluster}", timeout=timeout)
