"""AsyncWorker: the worker session driven by asyncio, one connection per server.

Only I/O and scheduling here (connect with backoff, feed packets, run handlers as tasks, signals); every decision
about what to send is the session's (``session.py``), shared with the blocking ``Worker``. Everything runs on the
event loop's thread: after each call into the session (a read, a connect or loss, a handler's outcome or update)
``_write_ready`` hands every link's queued bytes to its connection, which writes them at the end of the loop turn.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import threading
import time
from collections.abc import Iterable
from typing import Unpack, cast

from gearworks.connection import ServerAddress
from gearworks.connection.aio import AsyncConnection, open_connection
from gearworks.errors import ConnectionLost
from gearworks.protocol import Decoder, Packet
from gearworks.worker.job import WorkerJob
from gearworks.worker.session import (
    Handler,
    Outcome,
    Relay,
    ServerLink,
    WorkerBase,
    WorkerOptions,
    call_handler,
    call_hook,
)

__all__ = ["AsyncWorker"]

log = logging.getLogger("gearworks.worker")


class _LinkReceiver:
    """Feeds one connection's bytes to the session and starts the jobs it hands out."""

    __slots__ = ("connection", "decoder", "link", "lost", "worker")

    def __init__(self, worker: AsyncWorker, link: ServerLink, max_packet_size: int) -> None:
        self.worker = worker
        self.link = link
        self.decoder = Decoder(max_packet_size=max_packet_size)
        self.lost = asyncio.Event()
        self.connection: AsyncConnection | None = None

    def data_received(self, data: bytes) -> None:
        worker = self.worker
        receive = worker.session.receive
        link = self.link
        for packet in self.decoder.feed(data):
            job = receive(link, cast(Packet, packet))
            if job is not None:
                worker._start(job)
        if worker.session.unstamped:
            worker.session.poll(time.monotonic())  # time the link that fell asleep from now
        worker._write_ready()
        if self.connection is not None:
            # Results of inline handlers and the next GRAB go out now, not one loop turn later: at concurrency 1
            # every job waits on this round trip.
            self.connection.flush()
        worker._check_finished()  # burst: the last NO_JOB may have drained the worker

    def connection_lost(self, exc: Exception) -> None:
        log.debug("connection to %s lost: %s", self.link.address, exc)
        self.worker.session.disconnected(self.link, time.monotonic())
        self.worker._write_ready()
        self.lost.set()
        self.worker._check_finished()


class AsyncWorker(WorkerBase):
    """A Gearman worker for asyncio: up to ``concurrency`` jobs at once over one connection per server.

    Handlers are coroutine functions (run as tasks) or plain functions (run inline on the event loop: keep them
    short, or hand blocking work to an executor). Arguments: see ``WorkerBase`` and ``WorkerOptions``.
    """

    def __init__(
        self,
        servers: str | ServerAddress | Iterable[str | ServerAddress] | None = None,
        **options: Unpack[WorkerOptions],
    ) -> None:
        super().__init__(servers, **options)
        self._connections: dict[ServerLink, AsyncConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Event | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop running ``work()`` (``stop()`` from another thread is handed to it)."""
        self._relay = Relay(self.session, self._job_output)

    async def work(self, max_jobs: int | None = None, *, burst: bool = False, handle_signals: bool = True) -> int:
        """Serve jobs until ``stop()``, SIGTERM/SIGINT (drain) or ``max_jobs`` handled; returns the jobs handled.

        With ``burst`` (drain and exit, a batch consumer) it also returns once every server has answered NO_JOB
        (or cannot be reached) and the jobs in hand are done. Connections are opened here and closed on return; a
        server that fails is retried with backoff (``reconnect_delay``, ``max_reconnect_delay``), and a sleeping
        connection GRABs again every ``poll_interval`` seconds.
        """
        session = self.session
        loop = asyncio.get_running_loop()
        if self._finished is not None:
            raise RuntimeError("this worker is already working")
        if self.on_startup is not None:
            await _awaited(self.on_startup(self))  # raising fails work(): nothing is connected yet
        self._finished = asyncio.Event()
        self._loop = loop
        session.start(max_jobs, burst=burst)
        connectors = [loop.create_task(self._keep_connected(link)) for link in session.links]
        if session.poll_interval is not None:
            connectors.append(loop.create_task(self._poll_sleepers(session.poll_interval)))
        self._check_finished()  # burst with nothing registered
        signals = self._install_signals(loop) if handle_signals else []
        try:
            await self._finished.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if self._abort_timer is not None:
                self._abort_timer.cancel()
                self._abort_timer = None
            session.stop()
            for task in (*connectors, *self._tasks):
                task.cancel()
            for connection in list(self._connections.values()):
                connection.close()
            await asyncio.gather(*connectors, *self._tasks, return_exceptions=True)
            self._connections.clear()
            self._finished = None
            self._loop = None
            await self._shutdown_hook()
        return session.handled

    async def work_one(self) -> int:
        """Wait for one job, run it, and return (1, or 0 if stopped first)."""
        return await self.work(max_jobs=1)

    async def grab_one(self) -> WorkerJob | None:
        """Take one job and run it, returning that job; None at once when no server has one queued (a server that
        cannot be reached counts as having none)."""
        return self.session.last_job if await self.work(max_jobs=1, burst=True, handle_signals=False) else None

    def stop(self, drain: bool = False) -> None:
        """Stop ``work()``: at once (running handlers are cancelled, their jobs requeued by the server), or with
        ``drain`` grab nothing more and finish the jobs in hand within ``drain_timeout`` seconds. Safe from any
        thread: called outside the worker's event loop, it hands itself to that loop (``call_soon_threadsafe``)."""
        loop = self._loop
        if loop is not None and _running_loop() is not loop:
            loop.call_soon_threadsafe(self.stop, drain)
            return
        self.session.stop()
        if self._finished is None:
            return
        if not drain:
            self._finished.set()
        elif self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(self.drain_timeout, self._drain_expired)
            self._check_finished()

    def _drain_expired(self) -> None:
        log.warning(
            "%d job(s) still running after the %.1fs drain timeout; abandoning them (the server requeues them)",
            self.session.running,
            self.drain_timeout,
        )
        if self._finished is not None:
            self._finished.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)
        return installed

    def _on_signal(self, sig: int) -> None:
        log.info("%s: finishing %d job(s) in hand, then exiting", signal.Signals(sig).name, self.session.running)
        self.stop(drain=True)

    def _check_finished(self) -> None:
        if self._finished is not None and self.session.finished:
            self._finished.set()

    async def _keep_connected(self, link: ServerLink) -> None:
        """Keep ``link`` connected while the worker runs. Nothing ends this loop but ``work()`` returning: an
        unexpected exception is logged and counts as one failure (backing off), so a worker is never left waiting
        with no connection and no task to make one."""
        session = self.session
        while session.wants_connection(link):
            delay = link.backoff.delay(time.monotonic())
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            try:
                await self._connect_and_serve(link)
            except Exception:
                log.exception("connection to %s failed unexpectedly; retrying with backoff", link.address)
                connection = self._connections.pop(link, None)
                if connection is not None:
                    connection.close()
                session.failed(link, time.monotonic())
                self._write_ready()
                self._check_finished()

    async def _connect_and_serve(self, link: ServerLink) -> None:
        """One connection attempt, then serve until that connection is lost."""
        session = self.session
        receiver = _LinkReceiver(self, link, self.connect_options.max_packet_size)
        try:
            connection = await open_connection(link.address, receiver, self.connect_options)
        except ConnectionLost as exc:
            log.debug("connect to %s failed: %s", link.address, exc)
            session.connect_failed(link, time.monotonic())
            self._check_finished()  # burst: a server that cannot be reached counts as empty
            return
        if receiver.lost.is_set():
            session.connect_failed(link, time.monotonic())
            self._check_finished()
            return
        self._connections[link] = connection
        receiver.connection = connection
        session.connected(link)
        self._write_ready()
        try:
            await receiver.lost.wait()
        finally:
            self._connections.pop(link, None)

    async def _poll_sleepers(self, interval: float) -> None:
        """GRAB again on connections asleep for ``interval`` seconds (``WorkerSession.poll``)."""
        while True:
            due = self.session.poll(time.monotonic())
            self._write_ready()
            await asyncio.sleep(interval if due is None else due)

    async def _shutdown_hook(self) -> None:
        try:
            await _awaited(call_hook("on_shutdown", self.on_shutdown, self))
        except Exception:
            log.exception("on_shutdown hook raised; ignored")

    def _write_ready(self) -> None:
        connections = self._connections
        for link in self.session.take_ready():
            chunks = link.take_out()
            connection = connections.get(link)  # None once work() has let go of its connections
            if connection is not None and not connection.closed:  # closed: its connection_lost is on its way
                connection.write(chunks)

    _queued = _write_ready

    def _job_output(self, job: WorkerJob, chunks: list[bytes], packets: int) -> None:
        self.session.job_output(job, chunks, packets)
        self._write_ready()

    def _start(self, job: WorkerJob) -> None:
        registration = self.session.registration_for(job)
        if registration.coroutine:
            job.reroute(self._relay)  # its updates come from a task: written as they are made
            task = asyncio.get_running_loop().create_task(self._run(job, registration.handler))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.session.job_returned(job, call_handler(registration.handler, job))
            self._check_finished()

    async def _run(self, job: WorkerJob, handler: Handler) -> None:
        try:
            outcome = Outcome(await handler(job))
        except asyncio.CancelledError:
            self.session.job_cancelled(job)
            raise
        except Exception as exc:
            outcome = Outcome(error=exc)
        self.session.job_returned(job, outcome)
        self._write_ready()
        self._check_finished()


async def _awaited(result: object) -> None:
    """Await what a hook returned when it is awaitable (a coroutine function's call)."""
    if inspect.isawaitable(result):
        await result


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
