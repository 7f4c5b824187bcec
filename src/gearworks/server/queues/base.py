"""The interface between the job board and a store of background jobs.

The board collects the background jobs created and finished during one event-loop turn and hands them to the
store in one ``apply`` call, before that turn's replies are written: a durable store that returns has made the
jobs safe, so JOB_CREATED is never sent for a job a crash could lose. ``load`` gives them back at start-up.
Backends live next to this module; none may touch the board or sockets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["QueueStore", "StoredJob"]


@dataclass(frozen=True, slots=True)
class StoredJob:
    """What a store keeps of one background job; enough to rebuild it after a restart.

    ``priority`` is 0 (high), 1 (normal) or 2 (low); ``when`` is the epoch time a delayed job runs at, 0 if none.
    """

    handle: bytes
    function: bytes
    unique: bytes
    workload: bytes
    priority: int
    when: float = 0.0
    reducer: bytes | None = None


class QueueStore(Protocol):
    """A place to keep background jobs across restarts."""

    @property
    def durable(self) -> bool:
        """False for stores that keep nothing, so the board need not collect changes for them."""
        ...

    def load(self) -> Iterable[StoredJob]:
        """Every job stored and not yet removed, oldest first."""
        ...

    def apply(self, added: Sequence[StoredJob], removed: Sequence[bytes]) -> None:
        """Store ``added`` jobs and forget the ``removed`` handles, as one batch.

        Raises:
            QueueError: the write failed. The server logs it and keeps the jobs in memory; their JOB_CREATED
                replies are already queued (answering them with QUEUE_ERROR instead is left to the durable
                backends' issue).
        """
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
