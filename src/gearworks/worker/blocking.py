"""Worker: the worker session driven by blocking sockets and a ``selectors`` loop, one connection per server.

Handlers run inline (``concurrency=1``), in a thread pool, or in a process pool (CPU-bound Python). The session
(``session.py``, shared with ``AsyncWorker``) decides what to send; this module connects, reads, writes and waits.

How this works: only the loop's thread touches the session and the sockets. Pool threads hand their job output and
outcomes over through two queues and a wake-up socket the selector watches (a job's WORK_DATA is always taken
before its handler's outcome). Each loop turn applies what they left (``_settle``), writes everything the session
queued since the last turn (``_write_ready``: the results of inline handlers read in the last turn, relayed output,
the next GRABs), connects what is due, and waits in ``select`` for a server or the wake-up socket.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from types import FrameType
from typing import Any, Literal, Unpack, cast

from gearworks.connection import ServerAddress
from gearworks.connection.blocking import BlockingConnection
from gearworks.connection.pending import PendingConnection
from gearworks.errors import ConnectionLost, ProtocolError
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
    is_coroutine_handler,
)

__all__ = ["Worker"]

log = logging.getLogger("gearworks.worker")

Pool = Literal["inline", "thread", "process"] | Executor
_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class Worker(WorkerBase):
    """A blocking Gearman worker: ``concurrency`` jobs at once over one connection per server.

    Args:
        pool: where handlers run: ``"inline"`` in the loop's thread (the default for ``concurrency=1``),
            ``"thread"`` (the default otherwise), ``"process"`` (a process pool for CPU-bound handlers: handler,
            workload and result must pickle, and the handler gets a detached job that cannot send updates), or an
            ``Executor`` of yours.

    See ``WorkerBase`` and ``WorkerOptions`` for the other arguments. Handlers are plain functions (coroutine
    functions need ``AsyncWorker``).
    """

    def __init__(
        self,
        servers: str | ServerAddress | Iterable[str | ServerAddress] | None = None,
        *,
        pool: Pool | None = None,
        **options: Unpack[WorkerOptions],
    ) -> None:
        super().__init__(servers, **options)
        if pool is None:
            pool = "inline" if self.session.concurrency == 1 else "thread"
        if pool == "inline" and self.session.concurrency != 1:
            raise ValueError("an inline worker runs one job at a time: use concurrency=1 or a pool")
        self.pool = pool
        self._connections: dict[ServerLink, tuple[BlockingConnection, Decoder]] = {}
        self._stop_request: bool | None = None  # None: keep going; True: drain; False: stop now
        self._outbox: deque[tuple[WorkerJob, list[bytes], int]] = deque()
        self._returned: deque[tuple[WorkerJob, Outcome]] = deque()
        self._broken: set[ServerLink] = set()
        self._pending: dict[ServerLink, PendingConnection] = {}
        self._wake_send: socket.socket | None = None
        self._run = 0  # which work() call a pool's late outcome belongs to
        self._relay = Relay(self.session, self._relay_output)

    def _check_handler(self, handler: Handler) -> None:
        if is_coroutine_handler(handler):
            raise TypeError("Worker runs plain functions; serve coroutine functions with AsyncWorker")

    def stop(self, drain: bool = False) -> None:
        """Stop ``work()``: at once (jobs in hand are abandoned, the server requeues them), or with ``drain`` grab
        nothing more and finish the jobs in hand within ``drain_timeout`` seconds. Safe from any thread and from
        signal handlers."""
        self.session.stop()  # one flag store, safe here: no GRAB leaves after this, even from a running loop turn
        self._stop_request = drain and self._stop_request is not False
        self._wake()

    @property
    def stop_requested(self) -> bool | None:
        """None while running on; True once a drain was asked for; False for an immediate stop."""
        return self._stop_request

    def work_one(self) -> int:
        """Wait for one job, run it, and return (1, or 0 if stopped first)."""
        return self.work(max_jobs=1)

    def grab_one(self) -> WorkerJob | None:
        """Take one job and run it, returning that job; None at once when no server has one queued (a server that
        cannot be reached counts as having none)."""
        return self.session.last_job if self.work(max_jobs=1, burst=True, handle_signals=False) else None

    def work(self, max_jobs: int | None = None, *, burst: bool = False, handle_signals: bool = True) -> int:
        """Serve jobs until ``stop()``, SIGTERM/SIGINT (drain) or ``max_jobs`` handled; returns the jobs handled.

        With ``burst`` (drain and exit, a batch consumer) it also returns once every server has answered NO_JOB
        (or cannot be reached) and the jobs in hand are done. Connections are opened here and closed on return; a
        server that fails is retried with backoff (``reconnect_delay``, ``max_reconnect_delay``), and a sleeping
        connection GRABs again every ``poll_interval`` seconds.
        """
        session = self.session
        if self._wake_send is not None:
            raise RuntimeError("this worker is already working")
        if self.on_startup is not None:
            self.on_startup(self)  # raising fails work(): nothing is connected yet
        self._stop_request = None
        selector = selectors.DefaultSelector()
        wake_recv, self._wake_send = socket.socketpair()
        wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        selector.register(wake_recv, selectors.EVENT_READ, None)
        executor, own_executor = self._executor()
        previous = self._install_signals() if handle_signals else {}
        deadline: float | None = None
        session.start(max_jobs, burst=burst)
        try:
            while True:
                request = self.stop_requested  # never reset here: a signal may set it at any bytecode
                if request is False:
                    break
                if request and deadline is None:
                    session.stop()
                    deadline = time.monotonic() + self.drain_timeout
                self._settle(selector)
                now = time.monotonic()
                if session.finished:
                    break
                if deadline is not None and now >= deadline:
                    log.warning(
                        "%d job(s) still running after the %.1fs drain timeout; abandoning them (the server "
                        "requeues them)",
                        session.running,
                        self.drain_timeout,
                    )
                    break
                poll = session.poll(now)
                self._write_ready()  # the GRABs of links the poll woke
                timeout = _earliest(self._connect_due(selector, now), poll, deadline and deadline - now)
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        _drain_socket(wake_recv)
                    elif (pending := self._pending.get(key.data)) is not None:
                        selector.unregister(key.fd)
                        self._advance(selector, key.data, pending)
                    else:
                        self._read(cast(ServerLink, key.data), executor)
        finally:
            session.stop()
            self._write_ready()  # an immediate stop: results already in hand still go out
            self._run += 1  # outcomes of handlers still running in the pool are now stale
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for link in list(self._connections):
                self._drop(selector, link)
            for pending in self._pending.values():
                pending.close()
            self._pending.clear()
            if own_executor and executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            self._wake_send.close()
            self._wake_send = None
            wake_recv.close()
            selector.close()
            self._outbox.clear()
            self._returned.clear()
            self._broken.clear()
            call_hook("on_shutdown", self.on_shutdown, self)
        return session.handled

    def _executor(self) -> tuple[Executor | None, bool]:
        if isinstance(self.pool, Executor):
            return self.pool, False
        if self.pool == "thread":
            return ThreadPoolExecutor(self.session.concurrency, thread_name_prefix="gearworks-job"), True
        if self.pool == "process":
            return ProcessPoolExecutor(self.session.concurrency, initializer=_pool_process_signals), True
        return None, False

    def _install_signals(self) -> dict[int, _SignalHandler]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, _SignalHandler] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s: finishing the jobs in hand, then exiting", signal.Signals(signum).name)
        self.stop(drain=True)

    def _wake(self) -> None:
        wake = self._wake_send
        if wake is not None:
            with contextlib.suppress(OSError):  # buffer full (a wake-up is pending anyway) or closing
                wake.send(b"\0")

    _queued = _wake  # the next loop turn writes it

    # Connections.

    def _connect_due(self, selector: selectors.BaseSelector, now: float) -> float | None:
        """Start connecting every server that is down and due, and give up on attempts past their deadline;
        returns seconds until the next attempt or deadline (None: none). Connects never block the loop: each is a
        ``PendingConnection`` the selector watches (``_advance``), so a server that never answers does not stall
        the others."""
        session = self.session
        wait: float | None = None
        for link in session.links:
            pending = self._pending.get(link)
            if pending is not None and now >= pending.deadline:
                self._give_up(selector, link)
                pending = None
            if pending is None and session.wants_connection(link) and link.backoff.delay(now) == 0:
                self._advance(selector, link, PendingConnection(link.address, self.connect_options, now))
                pending = self._pending.get(link)
            if pending is not None:
                until = pending.deadline - now
            elif session.wants_connection(link):
                until = link.backoff.delay(now)
            else:
                continue
            wait = until if wait is None else min(wait, until)
        return wait

    def _advance(self, selector: selectors.BaseSelector, link: ServerLink, pending: PendingConnection) -> None:
        """Take a connect's next step: watch it again, or start serving the connection, or back off."""
        self._pending.pop(link, None)
        try:
            connection = pending.advance()
        except ConnectionLost as exc:
            log.debug("connect to %s failed: %s", link.address, exc)
            self.session.connect_failed(link, time.monotonic())
            return
        except Exception:
            # Never let a connect kill the loop that serves the other servers: log it, back off, retry.
            log.exception("connect to %s failed unexpectedly; retrying with backoff", link.address)
            self.session.connect_failed(link, time.monotonic())
            return
        if connection is None:
            self._pending[link] = pending
            selector.register(pending.fileno(), pending.events, link)
            return
        decoder = Decoder(max_packet_size=self.connect_options.max_packet_size)
        self._connections[link] = (connection, decoder)
        selector.register(connection, selectors.EVENT_READ, link)
        self.session.connected(link)
        self._write_ready()

    def _give_up(self, selector: selectors.BaseSelector, link: ServerLink) -> None:
        """A connect ran past ``connect_timeout`` (a server that never answers): abandon it and back off."""
        pending = self._pending.pop(link)
        selector.unregister(pending.fileno())
        pending.close()
        log.debug("connect to %s failed: no answer within %.1fs", link.address, self.connect_options.connect_timeout)
        self.session.connect_failed(link, time.monotonic())

    def _write_ready(self) -> None:
        """Write what the session queued; a failed write marks its link broken (dropped by the next ``_settle``)."""
        connections = self._connections
        for link in self.session.take_ready():
            chunks = link.take_out()
            entry = connections.get(link)
            if entry is None:
                continue
            try:
                entry[0].send(chunks)
            except ConnectionLost as exc:
                log.debug("write to %s failed: %s", link.address, exc)
                self._broken.add(link)
                self._wake()  # the closed socket no longer wakes the selector

    def _drop(self, selector: selectors.BaseSelector, link: ServerLink) -> None:
        entry = self._connections.pop(link, None)
        if entry is not None:
            selector.unregister(entry[0])
            entry[0].close()
        self.session.disconnected(link, time.monotonic())

    def _read(self, link: ServerLink, executor: Executor | None) -> None:
        entry = self._connections.get(link)
        if entry is None:
            return
        connection, decoder = entry
        try:
            data = connection.recv(None)
            packets = list(decoder.feed(data))
        except (ConnectionLost, ProtocolError) as exc:
            log.debug("connection to %s lost: %s", link.address, exc)
            self._broken.add(link)
            return
        receive = self.session.receive
        for packet in packets:
            job = receive(link, cast(Packet, packet))
            if job is not None:
                self._start(job, executor)

    def _settle(self, selector: selectors.BaseSelector) -> None:
        """Apply what pool threads and failed writes left (job output first, then outcomes), write, drop lost links."""
        returned = self._returned
        count = len(returned)  # outcomes queued so far: their jobs' output is already in the outbox
        outbox = self._outbox
        while outbox:
            self.session.job_output(*outbox.popleft())
        for _ in range(count):
            job, outcome = returned.popleft()
            self.session.job_returned(job, outcome)
        self._write_ready()
        while self._broken:
            self._drop(selector, self._broken.pop())
            self._write_ready()  # slots freed by the lost link go to the others

    # Running handlers.

    def _start(self, job: WorkerJob, executor: Executor | None) -> None:
        handler = self.session.registration_for(job).handler
        if executor is None:
            self.session.job_returned(job, call_handler(handler, job))
            return
        job.reroute(self._relay)
        try:
            future = executor.submit(call_handler, handler, job)
        except RuntimeError as exc:  # the pool is shutting down or broken
            self.session.job_returned(job, Outcome(error=exc))
            return
        run = self._run
        future.add_done_callback(lambda done: self._on_done(run, job, done))

    def _relay_output(self, job: WorkerJob, chunks: list[bytes], packets: int) -> None:
        """A pool thread's job update: queued for the loop thread."""
        self._outbox.append((job, chunks, packets))
        self._wake()

    def _on_done(self, run: int, job: WorkerJob, future: Future[Outcome]) -> None:
        if run != self._run:
            return  # finished after its work() call returned; the server has requeued it
        try:
            outcome = future.result()
        except BaseException as exc:  # a pickling failure, a dead pool process, cancellation
            outcome = Outcome(error=exc)
        self._returned.append((job, outcome))
        self._wake()


def _pool_process_signals() -> None:
    """In a pool process: ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the worker drains, so
    the job in hand must finish) and let SIGTERM kill (the worker never sends it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _earliest(*waits: float | None) -> float | None:
    """The shortest of the waits given (None: no wait)."""
    return min((wait for wait in waits if wait is not None), default=None)


def _drain_socket(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while sock.recv(4096):
            pass
