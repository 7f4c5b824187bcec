"""An in-memory Gearman farm for unit tests: client sessions ↔ one job board ↔ worker sessions, no sockets.

How this works (h11's ``ConnectionPair``, ``h11/tests/helpers.py``, with a server in the middle): every session link
that asks to connect gets a ``Peer`` of the farm's ``Board``. A ``FarmClient`` is a third client driver next to
``Client`` and ``AsyncClient`` (``BaseClient``'s API); a ``FarmWorker`` drives a ``WorkerSession`` as ``Worker``
does. ``run_until_idle`` drains every core's outboxes the way its driver does (``take_ready()``, then each link's
``take_out()``) and hands the bytes to the other side through the real decoders: the server's packet table for
client and worker bytes, ``ClientSession.receive`` and ``WorkerSession.receive`` for the board's replies. It repeats
until nothing is ready. Time is ``farm.now``, moved only by ``advance(seconds)``, which also fires what comes due on
the board (epoch jobs, CAN_DO_TIMEOUT) and in the client sessions (job timeouts). Worker handlers run synchronously
when their job is assigned, unless the worker holds its jobs (``autorun=False``) for the test to run or abandon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Unpack

from gearworks.client.session import BaseClient, Channel, ChannelState, ClientOptions
from gearworks.connection import ServerAddress
from gearworks.errors import ConnectionLost
from gearworks.protocol import REQ, Decoder, Packet
from gearworks.server.admin import AdminCommands
from gearworks.server.board import Board
from gearworks.server.dispatch import packet_table
from gearworks.server.jobs import HandleFactory
from gearworks.server.peers import Peer
from gearworks.worker.job import WorkerJob
from gearworks.worker.session import Handler, Outcome, ServerLink, WorkerSession, call_handler

__all__ = ["Farm", "FarmClient", "FarmWorker"]

ADDRESS = ServerAddress("127.0.0.1", 4730)
"""What the sessions believe they connect to."""
START = 1_700_000_000.0
"""The farm's clock at creation: a whole second of today's era, so epoch times stay exact."""
MAX_ROUNDS = 10_000


class _Wire:
    """One connection: the board's peer, the server's decoder for what the session sends, and where the board's
    bytes for it go (``deliver``, bound by the session's end to its link)."""

    __slots__ = ("deliver", "peer", "to_server")

    def __init__(self, peer: Peer, deliver: Callable[[bytes], None]) -> None:
        self.peer = peer
        self.deliver = deliver
        self.to_server = Decoder()


class FarmClient(BaseClient):
    """A client driver of the farm: ``Client``'s API (``submit``, counters, server list) over a ``ClientSession``
    whose bytes move only when the farm runs, on the farm's clock."""

    def __init__(self, farm: Farm, **options: Unpack[ClientOptions]) -> None:
        super().__init__([ADDRESS], **options)
        self.farm = farm
        self.session = self._session
        self.wires: dict[Channel, _Wire] = {}

    def _now(self) -> float:
        return self.farm.now

    def _flush(self) -> None:
        """Nothing to do: ``run_until_idle`` writes."""

    _queued = _flush

    def _close_channels(self, channels: list[Channel]) -> None:
        for channel in channels:
            wire = self.wires.pop(channel, None)
            if wire is not None:
                self.farm.hang_up(wire)

    def lose(self) -> None:
        """Drop every connection, as a network failure would (both sides hear of it)."""
        for channel, wire in list(self.wires.items()):
            self.farm.hang_up(wire)
            del self.wires[channel]
            self.session.lost(channel, ConnectionLost("farm connection dropped"), self.farm.now)

    def _pump(self) -> bool:
        moved = False
        session, farm = self.session, self.farm
        for channel in session.take_ready():
            if channel.state is ChannelState.IDLE and session.start_connecting(channel):
                self.wires[channel] = farm.dial(self._receiver(channel))
                session.connected(channel, farm.now)
            wire = self.wires.get(channel)
            if wire is not None and channel.state is ChannelState.CONNECTED:
                moved |= farm.to_server(wire, channel.take_out())
        return moved

    def _receiver(self, channel: Channel) -> Callable[[bytes], None]:
        def receive(data: bytes) -> None:
            self.session.receive(channel, data, self.farm.now)

        return receive


class FarmWorker:
    """A started ``WorkerSession`` of the farm (``session``). Jobs it is assigned run at once through
    ``call_handler``, or, with ``autorun`` off, wait in ``held`` for ``run``."""

    def __init__(self, farm: Farm, session: WorkerSession, autorun: bool) -> None:
        self.farm = farm
        self.session = session
        self.autorun = autorun
        self.held: list[WorkerJob] = []
        """Assigned jobs not run yet (``autorun`` off)."""
        self.wires: dict[ServerLink, _Wire] = {}

    def run(self, job: WorkerJob) -> None:
        """Run a held job's handler and send its outcome."""
        if job in self.held:
            self.held.remove(job)
        registration = self.session.registration_for(job)
        assert not registration.coroutine, "the farm runs plain-function handlers only"
        outcome: Outcome = call_handler(registration.handler, job)
        self.session.job_returned(job, outcome)

    def lose(self) -> None:
        """Drop every connection (the worker process died or its network did): the board requeues its jobs, the
        session backs off before reconnecting (``advance`` past it)."""
        for link, wire in list(self.wires.items()):
            self.farm.hang_up(wire)
            del self.wires[link]
            self.session.disconnected(link, self.farm.now)

    def _pump(self) -> bool:
        moved = False
        session, farm = self.session, self.farm
        for link in session.links:
            if session.wants_connection(link) and link.backoff.available(farm.now):
                self.wires[link] = farm.dial(self._receiver(link))
                session.connected(link)
        for link in session.take_ready():
            moved |= farm.to_server(self.wires[link], link.take_out())
        return moved

    def _receiver(self, link: ServerLink) -> Callable[[bytes], None]:
        decoder = Decoder()

        def receive(data: bytes) -> None:
            for packet in decoder.feed(data):
                assert isinstance(packet, Packet)
                job = self.session.receive(link, packet)
                if job is None:
                    continue
                if self.autorun:
                    self.run(job)
                else:
                    self.held.append(job)

        return receive


class Farm:
    """One board, its packet table and admin commands, and the sessions connected to it (see the module docstring).

    Args:
        board_options: passed to ``Board`` (``job_retries``, ``worker_wakeup``, ...); handles are ``H:farm:<n>``.
    """

    def __init__(self, **board_options: bool | int) -> None:
        self.now = START
        self.board = Board(handles=HandleFactory(b"H:farm"), **board_options)  # type: ignore[arg-type]
        self.table = packet_table(self.board)
        self.commands = AdminCommands(self.board, version=b"1.1.20+farm")
        self.clients: list[FarmClient] = []
        self.workers: list[FarmWorker] = []
        self._wires: dict[Peer, _Wire] = {}

    def client(self, **options: Unpack[ClientOptions]) -> FarmClient:
        """A client of the farm's server; ``command_timeout`` is off unless given (the farm's time jumps)."""
        options.setdefault("command_timeout", None)
        client = FarmClient(self, **options)
        self.clients.append(client)
        return client

    def worker(
        self,
        functions: Mapping[str, Handler],
        *,
        timeouts: Mapping[str, float] | None = None,
        autorun: bool = True,
    ) -> FarmWorker:
        """A started worker session serving ``functions`` (name → handler; ``timeouts`` adds CAN_DO_TIMEOUT)."""
        session = WorkerSession([ADDRESS])
        for name, handler in functions.items():
            session.register(name, handler, (timeouts or {}).get(name))
        session.start()
        worker = FarmWorker(self, session, autorun)
        self.workers.append(worker)
        return worker

    def admin(self, line: bytes) -> bytes:
        """The reply to one admin text line, from a connection of its own; then runs until idle (``cancel job``
        has clients to tell)."""
        peer = self.board.connect()
        reply, _ = self.commands.handle(peer, line)
        self.board.disconnect(peer)
        self.run_until_idle()
        return reply

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: due board timers and client deadlines fire, then everything runs until idle."""
        self.now += seconds
        for client in self.clients:
            client._close_channels(client.session.expire(self.now))
        self.run_until_idle()

    def run_until_idle(self) -> None:
        """Move bytes between the sessions and the board until no core has anything ready.

        Raises:
            RuntimeError: the farm is still busy after ``MAX_ROUNDS`` rounds (a livelock).
        """
        for _ in range(MAX_ROUNDS):
            moved = False
            for client in self.clients:
                moved |= client._pump()
            for worker in self.workers:
                moved |= worker._pump()
            deadline = self.board.next_deadline()
            if deadline is not None and deadline <= self.now:
                self.board.tick(self.now)
            for peer in self.board.take_ready():
                data = b"".join(peer.take_out())
                wire = self._wires.get(peer)
                if data and wire is not None:
                    wire.deliver(data)
                    moved = True
            if not moved and not self.board.ready:
                return
        raise RuntimeError(f"the farm is still busy after {MAX_ROUNDS} rounds")

    # -- wires -----------------------------------------------------------------------------------------------

    def dial(self, deliver: Callable[[bytes], None]) -> _Wire:
        """A new connection to the board; what the board sends on it goes to ``deliver``."""
        wire = _Wire(self.board.connect(), deliver)
        self._wires[wire.peer] = wire
        return wire

    def to_server(self, wire: _Wire, chunks: list[bytes]) -> bool:
        """Dispatch a session's bytes as the server's connections do; whether there were any."""
        if not chunks:
            return False
        board, peer = self.board, wire.peer
        board.now = self.now
        for item in wire.to_server.feed(b"".join(chunks)):
            assert isinstance(item, Packet)
            assert item.magic == REQ
            self.table[item.type](peer, item.args)
        return True

    def hang_up(self, wire: _Wire) -> None:
        """The board forgets a connection (requeueing its jobs); its unsent output is dropped."""
        self.board.disconnect(wire.peer)
        wire.peer.discard()
        del self._wires[wire.peer]
