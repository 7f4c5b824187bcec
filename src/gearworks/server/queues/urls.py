"""Choosing a queue store from ``--queue URL``: ``memory`` (or gearmand's ``builtin``), ``sqlite:///path``,
``redis://host:port/db``, ``postgresql://...``. Drivers for Redis and PostgreSQL are imported only when asked for."""

from __future__ import annotations

from urllib.parse import urlsplit

from gearworks.server.queues.base import QueueStore
from gearworks.server.queues.memory import MemoryStore

__all__ = ["open_store"]


def open_store(url: str) -> QueueStore:
    """Open the store ``url`` names.

    Raises:
        ValueError: an unknown scheme or a missing path.
        QueueError: the backend could not be opened or reached.
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url or url.startswith("sqlite:") else url.lower()
    if scheme in ("memory", "builtin", ""):
        return MemoryStore()
    if scheme == "sqlite":
        path = url.split(":", 1)[1]
        path = path[2:] if path.startswith("//") else path  # sqlite:///abs/path and sqlite:relative/path
        if not path:
            raise ValueError(f"no database path in queue URL {url!r} (expected sqlite:///path/to/queue.db)")
        from gearworks.server.queues.sqlite import SQLiteStore

        return SQLiteStore(path)
    if scheme in ("redis", "rediss", "unix"):
        from gearworks.server.queues.redis import RedisStore

        return RedisStore(url)
    if scheme in ("postgresql", "postgres"):
        from gearworks.server.queues.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        f"unknown queue {url!r}: expected memory, sqlite:///PATH, redis://HOST:PORT/DB or postgresql://..."
    )
