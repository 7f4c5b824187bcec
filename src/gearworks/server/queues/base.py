"""The interface between the job board and a store of background jobs.

The board collects the background jobs created and finished during one event-loop turn and hands them to the
store in one ``apply`` call, before that turn's replies are written: a durable store that returns has made the
jobs safe, so JOB_CREATED is never sent for a job a crash could lose. ``load`` gives them back at start-up.
Jobs handed out ``--job-retries`` times without finishing are buried in a separate dead-letter store (``buried``,
``unburied``, ``load_dead``) in the same transactions.
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

    ``priority`` is 0 (high), 1 (normal) or 2 (low); ``when`` is the epoch time a delayed job runs at, 0 if none;
    ``retries`` is how many times a dead letter was handed out (0 for live jobs).
    """

    handle: bytes
    function: bytes
    unique: bytes
    workload: bytes
    priority: int
    when: float = 0.0
    reducer: bytes | None = None
    retries: int = 0


class QueueStore(Protocol):
    """A place to keep background jobs across restarts."""

    @property
    def durable(self) -> bool:
        """False for stores that keep nothing, so the board need not collect changes for them."""
        ...

    def load(self) -> Iterable[StoredJob]:
        """Every job stored and not yet removed, oldest first."""
        ...

    def load_dead(self) -> Iterable[StoredJob]:
        """Every dead letter stored and not yet requeued or purged, oldest first."""
        ...

    def apply(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Forget the ``removed`` handles and store ``added`` jobs; forget the ``unburied`` dead letters and store
        the ``buried`` ones: all as one transaction. Removals go first, so a handle in both lists ends up stored
        (a dead letter requeued, or a job buried again, within one batch).

        Raises:
            QueueError: the write failed. The server logs it and keeps the jobs in memory; their JOB_CREATED
                replies are already queued (answering them with QUEUE_ERROR instead is left to the durable
                backends' issue).
        """
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
