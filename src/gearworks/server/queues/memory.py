"""The default queue store: jobs live only in the board's memory and are lost when the server stops, like
gearmand's ``builtin`` queue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gearworks.server.queues.base import StoredJob

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps nothing: the board holds every job already."""

    durable = False

    def load(self) -> Iterable[StoredJob]:
        """Nothing survives a restart."""
        return ()

    def load_dead(self) -> Iterable[StoredJob]:
        """Dead letters live only in the board too."""
        return ()

    def apply(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Nothing to write."""

    def heartbeat(self) -> None:
        """Nothing to keep alive."""

    def close(self) -> None:
        """Nothing to release."""
