"""Dead letters: the background jobs the board buried after ``--job-retries`` hand-outs without a result, and the
changes to them that a durable store has not been given yet (gearworks only; gearmand drops such jobs,
PROTOCOL.md §3.10).

How this works: ``Board._requeue`` buries an exhausted background job here; admin ``dead`` lists this mapping
(handle → ``DeadJob``, oldest first) and ``dead requeue|purge`` take letters out through the board. With a durable
store every bury and unbury is also staged, and ``Board.take_changes`` hands the stage to the store's writer. No
job state, no queues, no sockets here: putting a letter back in a queue is the board's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gearworks.server.jobs import DeadJob, Job, Priority
from gearworks.server.queues.base import StoredJob

__all__ = ["DeadLetters"]


class DeadLetters(Mapping[bytes, DeadJob]):
    """Dead letters by handle, oldest first, with their staged durable changes when ``collect`` is on."""

    __slots__ = ("_buried", "_collect", "_letters", "_unburied")

    def __init__(self, collect: bool) -> None:
        self._collect = collect
        self._letters: dict[bytes, DeadJob] = {}
        self._buried: dict[bytes, StoredJob] = {}
        self._unburied: list[bytes] = []

    def __getitem__(self, handle: bytes) -> DeadJob:
        return self._letters[handle]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._letters)

    def __len__(self) -> int:
        return len(self._letters)

    def bury(self, job: Job[Any]) -> None:
        """Keep a background job as a dead letter (its handle, payload and retries)."""
        dead = DeadJob(job.handle, job.function.name, job.unique, job.workload, job.priority, job.reducer, job.retries)
        self._letters[job.handle] = dead
        if self._collect:
            self._buried[job.handle] = StoredJob(
                dead.handle, dead.function, dead.unique, dead.workload, int(dead.priority), 0.0, dead.reducer,
                dead.retries,
            )  # fmt: skip

    def restore(self, records: Iterable[StoredJob]) -> None:
        """Take back the dead letters a durable store kept (already stored: nothing is staged)."""
        for record in records:
            self._letters[record.handle] = DeadJob(
                record.handle, record.function, record.unique, record.workload, Priority(record.priority),
                record.reducer, record.retries,
            )  # fmt: skip

    def named(self, handle: bytes | None) -> list[bytes]:
        """The dead letters an admin command names: one handle (none if unknown) or all (``None``)."""
        if handle is None:
            return list(self._letters)
        return [handle] if handle in self._letters else []

    def unbury(self, handle: bytes) -> DeadJob:
        """Take one dead letter out (requeued or purged)."""
        dead = self._letters.pop(handle)
        if self._collect:
            self._buried.pop(handle, None)
            self._unburied.append(handle)
        return dead

    def forget_all(self) -> None:
        """Drop every dead letter and staged change without writing anything: a peer adopted them (``--cluster``),
        and this server writes nothing more to their rows."""
        self._letters.clear()
        self._buried = {}
        self._unburied = []

    @property
    def changed(self) -> bool:
        """Whether buries or unburies wait for ``take_changes``."""
        return bool(self._buried or self._unburied)

    def take_changes(self) -> tuple[list[StoredJob], list[bytes]]:
        """The dead letters to store and the handles of those to remove since the last call."""
        buried, unburied = list(self._buried.values()), self._unburied
        self._buried = {}
        self._unburied = []
        return buried, unburied
