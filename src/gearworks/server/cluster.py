"""Cluster mode (``--cluster``): several servers on one shared Redis or PostgreSQL store, each owning its jobs
under a lease, a live one adopting the jobs of one that died.

How this works: ``LeaseKeeper`` is a thread with its own store connection (a ``SharedStore.link``). Every
``lease_interval`` it renews this node's lease; a renewal that succeeds moves ``Lease.valid_until`` to its start +
``lease_timeout``. While the monotonic clock is past that (the store unreachable, or the process was frozen) the
node is *fenced*: ``ClusterBoard`` hands out no job, because a peer may adopt its jobs once the lease has been
expired for another lease timeout (so fencing starts at least one lease timeout before any takeover). A renewal that
finds the lease gone means a peer adopted this node: the board forgets its stored jobs (``disown``), then the keeper
joins again with a new lease and an empty store share. After each renewal the keeper asks for peers expired that
long and adopts each in one store transaction; the board restores the adopted jobs as a replay would (order and
priority, unique keys, epoch times, dead letters) and wakes the workers. Results go to the event loop with
``call_soon_threadsafe``; the loop never waits for the store. GET_STATUS for a handle the board does not know is
answered from the store by the same thread, its reply held in place on the connection (``Peer.hold_reply``) so
that later replies do not overtake it. Admin ``cluster`` is answered at once, in request order with the other
admin commands on its connection, from ``Roster``: the membership table as the keeper read it after its last
renewal (each lease left counted down from then), so it is at most one lease interval old.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gearworks.errors import QueueError
from gearworks.protocol.admin import format_block
from gearworks.protocol.packets import PacketType
from gearworks.server.admin import AdminAction, AdminCommands
from gearworks.server.board import Board
from gearworks.server.connections import Hub
from gearworks.server.dispatch import status_body
from gearworks.server.jobs import Job, WriteState
from gearworks.server.peers import Peer, SleepState
from gearworks.server.queues.base import Member, SharedStore, StoredJob

__all__ = ["Cluster", "ClusterBoard", "ClusterOptions", "Lease", "LeaseKeeper", "Roster"]

log = logging.getLogger("gearworks.server.cluster")

_STATUS_RES = int(PacketType.STATUS_RES)
_WRITTEN = WriteState.WRITTEN
_ASLEEP = SleepState.ASLEEP


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """``--cluster NAME``, ``--node-id``, ``--lease-interval``, ``--lease-timeout``; ``store`` is the node's shared
    store (the writer thread's; the lease thread opens its own link)."""

    store: SharedStore
    lease_interval: float = 1.0

    @property
    def node(self) -> str:
        return self.store.membership.node

    @property
    def lease_timeout(self) -> float:
        return self.store.membership.lease_timeout


class Lease:
    """This node's lease as the event loop sees it: valid until ``valid_until`` (monotonic), set by the keeper."""

    __slots__ = ("valid_until",)

    def __init__(self) -> None:
        self.valid_until = 0.0

    @property
    def fenced(self) -> bool:
        """Whether the lease may have lapsed: hand out nothing."""
        return time.monotonic() > self.valid_until


@dataclass(frozen=True, slots=True)
class Roster:
    """The membership table as the lease thread last read it: ``members`` as of ``taken`` (monotonic)."""

    taken: float
    members: tuple[Member, ...]

    def now(self, at: float) -> list[Member]:
        """The members with each lease left counted down to monotonic time ``at``."""
        age = max(0.0, at - self.taken)
        return [dataclasses.replace(member, expires_in=member.expires_in - age) for member in self.members]


class ClusterBoard(Board):
    """A board whose stored jobs may move: hands out no job while the lease is in doubt, adopts and disowns."""

    lease = Lease()
    """Replaced by ``Cluster`` with the node's own."""

    def grab(self, peer: Peer, now: float) -> Job[Peer] | None:
        """The next job, or none while fenced."""
        if self.lease.fenced:
            if peer.sleep is _ASLEEP:
                self._unsleep(peer)
            return None
        return super().grab(peer, now)

    def runnable(self, peer: Peer) -> bool:
        """Nothing is runnable while fenced (so PRE_SLEEP puts workers to sleep instead of a NOOP loop)."""
        return not self.lease.fenced and super().runnable(peer)

    def wake_all(self) -> None:
        """NOOP the sleeping workers of every function with jobs waiting (after fencing ends)."""
        for function in list(self.functions.values()):
            counts = function.counts
            if function.sleepers and (counts[0] or counts[1] or counts[2]):
                self._wake(function)

    def disown(self) -> int:
        """Forget every job and dead letter already written to the store: a peer adopted them. Attached foreground
        clients get WORK_FAIL; a worker's later result gets JOB_NOT_FOUND. Returns how many jobs."""
        stored = [job for job in self.jobs.values() if job.background and job.written is _WRITTEN]
        for job in stored:
            self.fail(job)
        self.dead.forget_all()
        return len(stored)


@dataclass(frozen=True, slots=True)
class _Ask:
    """A store query for the keeper thread, and what to do with its answer on the loop."""

    query: Callable[[SharedStore], object]
    answer: Callable[[object], None]


_STOP = object()
_STOP_WAIT = 1.0
"""Seconds a stopping server waits for the lease thread's current store call."""


class LeaseKeeper:
    """The lease thread: renews, fences, notices a lost lease, adopts expired peers, reads the membership table
    into ``roster`` after each renewal, answers store queries.

    Args:
        link: its own connection to the shared store.
        lease: what the loop reads.
        interval: seconds between renewals.
        on_adopted: on the loop: (node, jobs, dead letters, monotonic time the adoption committed).
        on_lost: on the loop: a peer adopted this node; call ``rejoin`` once the board disowned its jobs.
        on_renewed: on the loop: the lease is valid again after fencing.
    """

    def __init__(
        self,
        link: SharedStore,
        lease: Lease,
        interval: float,
        *,
        on_adopted: Callable[[str, list[StoredJob], list[StoredJob]], None],
        on_lost: Callable[[], None],
        on_renewed: Callable[[], None],
    ) -> None:
        self.link = link
        self.lease = lease
        self.interval = interval
        self.timeout = link.membership.lease_timeout
        self.on_adopted = on_adopted
        self.on_lost = on_lost
        self.on_renewed = on_renewed
        self._requests: queue.SimpleQueue[_Ask | object] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lost = False
        self._rejoin = threading.Event()
        self._fenced_since: float | None = None
        self._failures = 0
        self.roster = Roster(time.monotonic(), ())
        """Replaced (never changed) by the thread after each renewal; read by the loop."""

    def join(self) -> None:
        """Create this node's lease (at start, before replay, so no peer adopts what this node is loading).

        Raises:
            QueueError: the store did not answer, or a live server holds this node id.
        """
        started = time.monotonic()
        self.link.renew(join=True)
        self.lease.valid_until = started + self.timeout
        self._read_roster()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the thread."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="gearworks-lease", daemon=True)
        self._thread.start()

    def ask(self, query: Callable[[SharedStore], object], answer: Callable[[object], None]) -> None:
        """Run ``query`` on the thread's connection and ``answer`` with its result (or the QueueError) on the loop."""
        self._requests.put(_Ask(query, answer))

    def rejoin(self) -> None:
        """The board forgot its adopted jobs: take a new lease at the next beat."""
        self._rejoin.set()

    def stop(self) -> None:
        """End the thread (within one store call) and close its connection."""
        self._requests.put(_STOP)
        if self._thread is not None:
            self._thread.join(_STOP_WAIT)  # a daemon thread: a hung store call must not hold the stop
        else:
            self.link.close()

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the server is stopping
                loop.call_soon_threadsafe(callback, *args)

    def _run(self) -> None:
        beat_at = time.monotonic()
        try:
            while True:
                try:
                    request = self._requests.get(timeout=max(0.0, beat_at - time.monotonic()))
                except queue.Empty:
                    request = None
                if request is _STOP:
                    return
                if isinstance(request, _Ask):
                    self._answer(request)
                if time.monotonic() >= beat_at:
                    beat_at = time.monotonic() + self.interval
                    self._beat()
        finally:
            self.link.close()

    def _answer(self, request: _Ask) -> None:
        try:
            result: object = request.query(self.link)
        except QueueError as exc:
            result = exc
        self._post(request.answer, result)

    def _beat(self) -> None:
        """Renew (or join again), then adopt expired peers."""
        if self._lost and not self._rejoin.is_set():
            return  # the loop has not disowned the adopted jobs yet
        started = time.monotonic()
        try:
            renewed = self.link.renew(join=self._lost)
        except QueueError as exc:
            self._not_renewed(exc)
            return
        if not renewed:
            self._lost = True
            self.lease.valid_until = 0.0
            node = self.link.membership.node
            log.error("lease of node %s was taken over by a peer: forgetting its stored jobs", node)
            self._post(self.on_lost)
            return
        if self._lost:
            log.warning("node %s joined the cluster again with a new lease", self.link.membership.node)
            self._lost = False
            self._rejoin.clear()
        was_fenced = self.lease.fenced
        self.lease.valid_until = started + self.timeout
        self._failures = 0
        if self._fenced_since is not None:
            log.warning("lease renewed after %.1f s: handing out jobs again", started - self._fenced_since)
            self._fenced_since = None
        if was_fenced:
            self._post(self.on_renewed)
        self._adopt_expired()
        self._read_roster()

    def _read_roster(self) -> None:
        """Read the membership table into ``roster`` (kept as it was if the store does not answer)."""
        taken = time.monotonic()
        try:
            members = self.link.members()
        except QueueError as exc:
            log.debug("membership table not read (admin cluster shows the last one): %s", exc)
            return
        self.roster = Roster(taken, tuple(members))

    def _not_renewed(self, exc: QueueError) -> None:
        self._failures += 1
        if self._failures & (self._failures - 1) == 0:  # 1, 2, 4, 8, ...: a line per doubling, not per beat
            log.warning("lease renewal failed (%d in a row): %s", self._failures, exc)
        if self._fenced_since is None and self.lease.fenced:
            self._fenced_since = self.lease.valid_until
            log.error(
                "lease of node %s not renewed for %.1f s: fenced, handing out no jobs until it is (peers may take "
                "its jobs over %.1f s later)",
                self.link.membership.node, self.timeout, self.timeout,
            )  # fmt: skip

    def _adopt_expired(self) -> None:
        try:
            for node in self.link.expired():
                jobs, dead = self.link.adopt(node)
                log.warning("adopted %d jobs and %d dead letters of node %s, whose lease expired", len(jobs),
                            len(dead), node)  # fmt: skip
                self._post(self.on_adopted, node, jobs, dead)
        except QueueError as exc:
            log.warning("takeover of an expired peer failed (retried at the next beat): %s", exc)


class Cluster:
    """Wires a node into its server: the lease thread, GET_STATUS from the store, admin ``cluster``.

    Args:
        options: this node's cluster options.
        board: the server's board.
    """

    def __init__(self, options: ClusterOptions, board: ClusterBoard) -> None:
        self.options = options
        self.board = board
        board.lease = self.lease = Lease()
        self.keeper = LeaseKeeper(
            options.store.link(),
            self.lease,
            options.lease_interval,
            on_adopted=self._adopted,
            on_lost=self._lost,
            on_renewed=self._renewed,
        )
        self.hub: Hub | None = None
        self.adopted = 0
        """Jobs adopted from peers since start."""

    def attach(self, hub: Hub, admin: AdminCommands) -> None:
        """Answer GET_STATUS of unknown handles from the store, and admin ``cluster``."""
        self.hub = hub
        hub.dispatch[PacketType.GET_STATUS] = self._on_get_status
        admin.add_command(b"cluster", self._on_cluster)

    def start(self) -> None:
        """Join (before the replay) and start the lease thread.

        Raises:
            QueueError: as ``LeaseKeeper.join``.
        """
        self.keeper.join()
        self.keeper.start(asyncio.get_running_loop())

    def listening(self, port: int) -> None:
        """The node listens on ``port``: an address recorded as ``host:0`` (``-p 0``, fixed before the bind) gets
        the bound port in the lease from the next renewal."""
        for store in (self.options.store, self.keeper.link):
            me = store.membership
            host, colon, old = me.address.rpartition(":")
            if colon and old == "0":
                store.membership = dataclasses.replace(me, address=f"{host}:{port}")

    def close(self) -> None:
        """Stop the lease thread; the lease lapses (peers adopt what is left after twice the lease timeout)."""
        self.keeper.stop()

    def _flush(self) -> None:
        if self.hub is not None:
            self.hub.flush()

    def _adopted(self, node: str, jobs: list[StoredJob], dead: list[StoredJob]) -> None:
        count = self.board.restore(jobs, time.time(), dead)
        self.adopted += count
        log.warning("took over %d jobs of node %s", count, node)
        self._flush()

    def _lost(self) -> None:
        count = self.board.disown()
        log.error("forgot %d stored jobs adopted by a peer", count)
        self._flush()
        self.keeper.rejoin()

    def _renewed(self) -> None:
        self.board.wake_all()
        self._flush()

    def _on_get_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        """GET_STATUS: from the board, or for a handle it does not know, from the store (a peer may own it)."""
        handle = args[0].partition(b"\0")[0]  # truncated at a NUL, as status_body does
        if handle in self.board.jobs:
            peer.send(_STATUS_RES, status_body(self.board, handle))
            return

        # Held in place: the replies to requests after this one wait for the store's answer (request order).
        marker = peer.hold_reply(_STATUS_RES)

        def answer(found: object) -> None:
            # The store knows that the job exists and who owns it, not whether a worker holds it now.
            known = isinstance(found, tuple)
            peer.fill(marker, handle + (b"\x001\x000\x000\x000" if known else b"\x000\x000\x000\x000"))
            self._flush()

        self.keeper.ask(lambda store: store.locate(handle), answer)

    def _on_cluster(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        """``cluster``: ``NODE\\tADDRESS\\tLEASE_LEFT\\tJOBS\\tSTATE`` per node, from the keeper's roster (at once,
        so in order with the connection's other admin replies)."""
        me = self.options.node
        members = self.keeper.roster.now(time.monotonic())
        return format_block(self._row(member, me) for member in members), AdminAction.NONE

    def _row(self, member: Member, me: str) -> bytes:
        if member.node == me:
            state = "fenced" if self.lease.fenced else "self"
        elif member.expires_in > 0:
            state = "live"
        elif member.expires_in > -member.lease_timeout:
            state = "expired"
        else:
            state = "dead"
        return f"{member.node}\t{member.address}\t{member.expires_in:.3f}\t{member.jobs}\t{state}".encode()
