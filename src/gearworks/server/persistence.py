"""Group commit of background-job changes to a queue store, off the event loop.

How this works: the server stages each loop turn's changes (jobs added, handles removed, dead letters buried and
unburied) together with opaque tokens (what to acknowledge once they are safe). One writer thread runs ``store.apply``
for one batch at a time; everything staged while a write is in flight is merged into the next batch, so under load many
submissions share one transaction (and one fsync), and when idle a lone submission is written at once. Merging keeps the
last change per handle: a removal cancels the staged insert of the same handle (stores apply removals first). When a
batch is written, or fails, ``on_written(tokens, error)`` runs on the event loop: only then may the server acknowledge
those jobs. The backlog (jobs staged or being written) is what the server uses to apply back-pressure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gearworks.errors import QueueError
from gearworks.server.queues.base import QueueStore, StoredJob

__all__ = ["GroupCommit"]

log = logging.getLogger("gearworks.server.queue")

T = TypeVar("T")


class _Batch(Generic[T]):
    __slots__ = ("added", "buried", "removed", "tokens", "unburied")

    def __init__(self) -> None:
        self.added: dict[bytes, StoredJob] = {}
        self.removed: list[bytes] = []
        self.buried: dict[bytes, StoredJob] = {}
        self.unburied: list[bytes] = []
        self.tokens: list[T] = []

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.buried or self.unburied or self.tokens)

    def write(self, store: QueueStore) -> None:
        """Apply the batch to ``store`` (on the writer thread)."""
        store.apply(list(self.added.values()), self.removed, list(self.buried.values()), self.unburied)


class GroupCommit(Generic[T]):
    """Writes staged changes to ``store`` one transaction at a time on a dedicated thread.

    Args:
        store: the durable store (its ``apply`` is only ever called from the writer thread, one call at a time).
        on_written: called on the event loop with a batch's tokens and None, or the QueueError that lost it.
    """

    def __init__(self, store: QueueStore, on_written: Callable[[list[T], QueueError | None], None]) -> None:
        self.store = store
        self.on_written = on_written
        self._staged: _Batch[T] = _Batch()
        self._writing: _Batch[T] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gearworks-queue")
        self._idle: asyncio.Event | None = None
        self.batches = 0
        """Transactions written so far (for logs and benchmarks)."""

    @property
    def backlog(self) -> int:
        """Jobs staged or being written, not yet safe."""
        writing = len(self._writing.added) if self._writing is not None else 0
        return len(self._staged.added) + writing

    @property
    def busy(self) -> bool:
        """Whether anything is staged or being written."""
        return self._writing is not None or bool(self._staged)

    def stage(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        tokens: Sequence[T] = (),
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Queue changes for the next transaction; start it at once if the writer is idle.

        Within one call removals come before additions of the same handle (a requeued dead letter).
        """
        staged = self._staged
        pending = staged.added
        for handle in removed:
            pending.pop(handle, None)
        staged.removed.extend(removed)
        for job in added:
            pending[job.handle] = job
        dead = staged.buried
        for handle in unburied:
            dead.pop(handle, None)
        staged.unburied.extend(unburied)
        for job in buried:
            dead[job.handle] = job
        staged.tokens.extend(tokens)
        if self._writing is None and staged:
            self._start()

    def _start(self) -> None:
        batch, self._staged = self._staged, _Batch()
        self._writing = batch
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, batch.write, self.store)
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[None]) -> None:
        batch = self._writing
        assert batch is not None
        self._writing = None
        self.batches += 1
        error: QueueError | None = None
        exc = future.exception()
        if isinstance(exc, QueueError):
            error = exc
        elif exc is not None:
            error = QueueError(f"queue store write failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        if error is not None:
            log.error("queue write of %d jobs failed: %s", len(batch.added), error)
        try:
            self.on_written(batch.tokens, error)
        finally:
            if self._staged:
                self._start()
            elif self._idle is not None:
                self._idle.set()

    async def flush(self) -> None:
        """Wait until everything staged so far has been written (or has failed)."""
        while self.busy:
            self._idle = asyncio.Event()
            await self._idle.wait()
        self._idle = None

    def close(self) -> None:
        """Stop the writer thread (call after ``flush``)."""
        self._executor.shutdown(wait=True)
