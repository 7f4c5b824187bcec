"""Group commit of background-job changes to a queue store, off the event loop.

How this works: the server stages each loop turn's changes (jobs added, handles removed, dead letters buried and
unburied) together with opaque tokens (what to acknowledge once they are safe). One writer thread runs ``store.apply``
for one batch at a time; everything staged while a write is in flight is merged into the next batch, so under load many
submissions share one transaction (and one fsync), and when idle a lone submission is written at once. Merging keeps the
last change per handle: a removal cancels the staged insert of the same handle (stores apply removals first). When a
batch is written, or fails, ``on_written(tokens, error)`` runs on the event loop: only then may the server acknowledge
those jobs. The backlog (jobs staged or being written) is what the server uses to apply back-pressure.

A failed batch's tokens come back with the error (their submitters get QUEUE_ERROR), but its changes are kept and
merged in front of the next batch: a job completed while the store was down is removed once it is back, and does
not run again after a restart. The jobs the server drops because of the failure are removed by the changes it stages
in ``on_written``, which cancel their kept inserts. Kept changes with nothing else to write are retried every
``RETRY`` seconds. Between writes (at most every ``HEARTBEAT`` seconds) the writer thread calls ``store.heartbeat``.
The loop never waits for the store: ``close`` gives up after its timeout, and the writer is a daemon thread, so a
hung store cannot hold the process at exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from gearworks.errors import QueueError
from gearworks.server.queues.base import QueueStore, StoredJob

__all__ = ["HEARTBEAT", "RETRY", "GroupCommit"]

log = logging.getLogger("gearworks.server.queue")

T = TypeVar("T")

HEARTBEAT = 1.0
"""Seconds between ``store.heartbeat`` calls (owner-lock renewal, noticing a lost connection)."""
RETRY = 1.0
"""Seconds before changes kept from a failed write are written again when nothing else is."""


def _replace(
    pending: dict[bytes, StoredJob], gone: list[bytes], removed: Sequence[bytes], added: Iterable[StoredJob]
) -> None:
    """Record ``removed`` (dropping their pending inserts) and then ``added`` in one table's changes."""
    for handle in removed:
        pending.pop(handle, None)
    gone.extend(removed)
    for job in added:
        pending[job.handle] = job


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

    def merge(
        self,
        added: Iterable[StoredJob],
        removed: Sequence[bytes],
        tokens: Sequence[T],
        buried: Iterable[StoredJob],
        unburied: Sequence[bytes],
    ) -> None:
        """Apply later changes on top of this batch: removals first, each cancelling a pending insert."""
        _replace(self.added, self.removed, removed, added)
        _replace(self.buried, self.unburied, unburied, buried)
        self.tokens.extend(tokens)

    def kept(self) -> _Batch[T]:
        """The changes of this (failed) batch without its tokens: what must still be written."""
        kept: _Batch[T] = _Batch()
        kept.merge(self.added.values(), self.removed, (), self.buried.values(), self.unburied)
        return kept

    def write(self, store: QueueStore) -> None:
        """Apply the batch to ``store`` (on the writer thread)."""
        store.apply(list(self.added.values()), self.removed, list(self.buried.values()), self.unburied)


class GroupCommit(Generic[T]):
    """Writes staged changes to ``store`` one transaction at a time on a dedicated thread.

    Args:
        store: the durable store. From here on it belongs to the writer thread: ``apply``, ``heartbeat`` and
            ``close`` are only called there, one at a time.
        on_written: called on the event loop with a batch's tokens and None, or the QueueError that lost it.
    """

    def __init__(self, store: QueueStore, on_written: Callable[[list[T], QueueError | None], None]) -> None:
        self.store = store
        self.on_written = on_written
        self._staged: _Batch[T] = _Batch()
        self._writing: _Batch[T] | None = None
        self._kept: _Batch[T] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._requests: queue.SimpleQueue[_Batch[T] | concurrent.futures.Future[None]] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
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

    @property
    def kept(self) -> int:
        """Changes kept from failed writes, waiting for the store to come back."""
        kept = self._kept
        return 0 if kept is None else len(kept.added) + len(kept.removed) + len(kept.buried) + len(kept.unburied)

    def start(self) -> None:
        """Start the writer thread, and with it the heartbeats (after replay: ``load`` runs on the caller's
        thread, and the store is used by one thread at a time). The first ``stage`` starts it too."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gearworks-queue", daemon=True)
            self._thread.start()

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
        staged.merge(added, removed, tokens, buried, unburied)
        if self._writing is None and staged:
            self._start()

    def _start(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        batch, self._staged = self._staged, _Batch()
        if self._kept is not None:
            later, batch, self._kept = batch, self._kept, None
            batch.merge(later.added.values(), later.removed, later.tokens, later.buried.values(), later.unburied)
        self._writing = batch
        self._loop = asyncio.get_running_loop()
        self.start()
        self._requests.put(batch)

    def _run(self) -> None:
        """The writer thread: one batch at a time, a heartbeat when one is due, until ``close`` sends a future."""
        store = self.store
        beat_at = time.monotonic() + HEARTBEAT
        while True:
            try:
                request = self._requests.get(timeout=max(0.0, beat_at - time.monotonic()))
            except queue.Empty:
                request = None
            if isinstance(request, concurrent.futures.Future):
                try:
                    store.close()
                finally:
                    request.set_result(None)
                return
            if request is not None:
                error: BaseException | None = None
                try:
                    request.write(store)
                except BaseException as exc:  # handed to the loop, which reports it
                    error = exc
                self._post(request, error)
            if time.monotonic() >= beat_at:
                try:
                    store.heartbeat()
                except Exception:
                    log.exception("queue store heartbeat failed")
                beat_at = time.monotonic() + HEARTBEAT

    def _post(self, batch: _Batch[T], error: BaseException | None) -> None:
        loop = self._loop
        assert loop is not None
        # RuntimeError: the loop is gone, the server stopped without waiting for this write (``close`` logged it).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._written, batch, error)

    def _written(self, batch: _Batch[T], exc: BaseException | None) -> None:
        self._writing = None
        self.batches += 1
        error: QueueError | None = None
        if isinstance(exc, QueueError):
            error = exc
        elif exc is not None:
            error = QueueError(f"queue store write failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        if error is not None:
            log.error("queue write of %d jobs failed: %s", len(batch.added), error)
            kept = batch.kept()
            if kept:
                self._kept = kept  # merged in front of whatever ``on_written`` stages next
        try:
            self.on_written(batch.tokens, error)
        finally:
            if self._staged:
                self._start()
            else:
                if self._kept is not None and self._retry is None:
                    self._retry = asyncio.get_running_loop().call_later(RETRY, self._retry_kept)
                if self._idle is not None:
                    self._idle.set()

    def _retry_kept(self) -> None:
        self._retry = None
        if self._writing is None and self._kept is not None:
            self._start()

    async def flush(self) -> None:
        """Wait until everything staged so far has been written (or has failed)."""
        while self.busy:
            self._idle = asyncio.Event()
            await self._idle.wait()
        self._idle = None

    async def close(self, wait: float) -> None:
        """Write what is staged (and try the kept changes once more), then close the store on the writer thread.

        Gives up after ``wait`` seconds, logging what was not written: a hung store must not hold a stopping
        server (unacknowledged submissions are lost as in a crash; completed jobs not removed run again).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        if self._kept is not None and self._writing is None:
            self._start()
        try:
            async with asyncio.timeout_at(deadline):
                await self.flush()
        except TimeoutError:
            log.error(
                "queue store still busy after %.1f s at shutdown: %d jobs and %d removals not written",
                wait, self.backlog, len(self._staged.removed) + len(self._writing.removed if self._writing else ()),
            )  # fmt: skip
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.kept:
            log.error("%d queue changes could not be written: completed jobs among them may run again", self.kept)
        if self._thread is None:
            self.store.close()
            return
        closed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._requests.put(closed)
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.wrap_future(closed)
        except TimeoutError:
            log.error("queue store did not close within %.1f s at shutdown", wait)
