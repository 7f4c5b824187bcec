"""The asyncio layer of the job server: bytes from a connection → decoder → board → replies, one write per batch.

How this works: ``Connection`` is an ``asyncio.Protocol`` (no streams: a callback per read, no task per
connection). Every packet one read completes is dispatched through the packet table (``dispatch``); the board
appends replies to the outboxes (``peers.Peer``) of whichever peers they concern and lists those peers in
``board.ready``. Every callback that calls into the board — a read's batch, the timer, a durable write finishing,
a connection lost — ends with ``Hub.flush``: it stages the batch's durable changes, takes ``board.take_ready()``,
maps each peer to its connection through ``Hub.connections`` and writes that peer's ``take_out()`` in a single
``transport.write`` (flushing at the end of the batch rather than in a ``call_soon`` saves a loop iteration, i.e.
latency, on every request). Only the hub's dict points from a peer to its connection, so a closed connection,
once out of the dict, is freed by reference counting with its buffers. Malformed input gets an ERROR packet saying
what was wrong, after the replies to everything before it, and only that connection is closed. No clock or job
logic here beyond passing ``now`` to the board.

Bounds (``limits.Limits``): a connection beyond ``max_connections`` gets ERROR SERVER_BUSY and is closed. Reading
is switched by ``limits.ReadSwitch``, which counts its reasons apart: the durable queue's backlog (every
connection), the connection's own unread output over ``max_output_bytes`` (the transport's high-water mark, so
``pause_writing`` says so), and, once per slow peer, being the producer of output for a peer over that mark (the
connection whose input is being handled when the output is written). A slow peer is disconnected when its unread
output passes 4 times the cap, or stays over it for ``output_timeout``; its producers are released then, or when
it drains. A once-a-second sweep closes connections whose packet is unfinished ``packet_timeout`` after its first
byte, and, with ``idle_timeout``, connections silent that long; a connection we paused is never timed out for it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from gearworks.errors import ProtocolError, QueueError
from gearworks.protocol.codec import DEFAULT_MAX_PACKET_SIZE, LARGE_PAYLOAD, Decoder, pack_header
from gearworks.protocol.packets import REQ, RES, Packet, PacketType
from gearworks.server.admin import AdminAction, AdminCommands
from gearworks.server.board import Board
from gearworks.server.dispatch import packet_table
from gearworks.server.heap import RELEASE_WHEN_QUIET, release_free_memory, release_kept_memory
from gearworks.server.jobs import Job
from gearworks.server.limits import ANNOUNCE, Limits, Pause, ReadSwitch
from gearworks.server.peers import Peer
from gearworks.server.persistence import GroupCommit

__all__ = ["Connection", "Hub", "SocketOptions"]

log = logging.getLogger("gearworks.server")

_ERROR = int(PacketType.ERROR)
_INVALID_MAGIC = b"INVALID_MAGIC\0Request magic expected"
_SERVER_BUSY = b"SERVER_BUSY\0Too many connections (--max-connections)"
_BACKLOG, _OUTPUT, _THROTTLED = Pause.BACKLOG, Pause.OUTPUT, Pause.THROTTLED
SWEEP_EVERY = 1.0
"""Seconds between checks of the packet, output and idle timeouts."""
REFUSAL_LOG_EVERY = 10.0
"""Refused connections are logged at once, then summed up at most this often."""
_NO_ACTION = AdminAction.NONE
_time = time.time
MAX_WRITE_BACKLOG = 50_000
"""Jobs waiting for the durable queue beyond which the server stops reading requests until it catches up."""
RELEASE_AFTER = 1024 * 1024
"""A connection lost with this much of a message buffered hands the heap's free memory back to the system."""


@dataclass(frozen=True, slots=True)
class SocketOptions:
    """TCP options set on every accepted socket (TCP_NODELAY and SO_KEEPALIVE always, PROTOCOL.md §1.5).

    The keepalive timings are applied when positive (gearmand's ``--keepalive-idle/-interval/-count``).
    """

    keepalive_idle: int = -1
    keepalive_interval: int = -1
    keepalive_count: int = -1

    def apply(self, sock: socket.socket) -> None:
        """Set the options on an accepted TCP socket."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", self.keepalive_idle),
            ("TCP_KEEPINTVL", self.keepalive_interval),
            ("TCP_KEEPCNT", self.keepalive_count),
        ):
            if value > 0 and hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class Hub:
    """What the connections of one server share: the board and its packet table, admin commands, the peer →
    connection map, the flush after every call into the board, and the timer.

    Args:
        board: the job board.
        admin: answers admin text lines.
        on_action: called with SHUTDOWN or GRACEFUL when an admin asks the server to stop.
        max_packet_size: largest body a peer may declare.
        socket_options: applied to each accepted TCP socket.
        limits: connection, output and timeout caps (the board applies ``max_queued_bytes``).
    """

    def __init__(
        self,
        board: Board,
        admin: AdminCommands,
        *,
        on_action: Callable[[AdminAction], None],
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        socket_options: SocketOptions | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.board = board
        self.dispatch = packet_table(board)
        self.admin = admin
        self.on_action = on_action
        self.max_packet_size = max_packet_size
        self.socket_options = socket_options or SocketOptions()
        self.connections: dict[Peer, Connection] = {}
        """Every open connection by its peer: the one way from the board's ``ready`` peers to their sockets."""
        self.commit: GroupCommit[Job[Peer]] | None = (
            GroupCommit(board.store, self._written) if board.store.durable else None
        )
        self.reading_paused = False
        self.on_idle: Callable[[], None] | None = None
        self.limits = limits = limits or Limits()
        self.max_connections = limits.connections_cap()
        self.producer: Connection | None = None
        """The connection whose input is being handled: output it causes for a slow peer throttles it."""
        self.partial: dict[Connection, float] = {}
        """Connections holding part of a packet, with when that packet began."""
        self.over: dict[Connection, float] = {}
        """Connections whose unread output is over ``max_output_bytes``, with since when."""
        self.refused = 0
        self._refusals_logged_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released_at = 0.0
        """When the sweep last gave free heap back (``heap.release_kept_memory``)."""

    def connection(self) -> Connection:
        """Protocol factory for ``loop.create_server``."""
        return Connection(self)

    def flush(self) -> None:
        """The end of a call into the board: persist its background jobs (and stage the board's durable changes
        even when nobody has output: a worker lost mid-job buries or drops a background job silently), then write
        each ready peer's output once."""
        board = self.board
        if not board.ready and not board.changed:
            return
        commit = self.commit
        if commit is not None:
            added, removed, jobs, buried, unburied = board.take_changes()
            if added or removed or jobs or buried or unburied:
                commit.stage(added, removed, jobs, buried, unburied)
                if commit.backlog > MAX_WRITE_BACKLOG and not self.reading_paused:
                    self._pause_reading(True)
        connections = self.connections
        for peer in board.take_ready():
            connection = connections.get(peer)
            if connection is not None:
                connection.write_out(peer.take_out())
        if board.next_deadline() is not None:
            self.schedule_timer()
        if self.on_idle is not None and not board.jobs:
            self.on_idle()

    def _written(self, jobs: list[Job[Peer]], error: QueueError | None) -> None:
        """A durable batch is written (or lost): release the JOB_CREATED (or QUEUE_ERROR) replies it held."""
        self.board.written(jobs, error is not None)
        self.flush()
        if self.reading_paused and self.commit is not None and self.commit.backlog < MAX_WRITE_BACKLOG // 4:
            self._pause_reading(False)

    def _pause_reading(self, pause: bool) -> None:
        """Back-pressure while the durable queue falls behind: stop (or resume) reading every connection."""
        self.reading_paused = pause
        for connection in list(self.connections.values()):
            if pause:
                connection.switch.pause(_BACKLOG, connection.transport)
            else:
                connection.resume(_BACKLOG)

    def refuse(self, address: bytes) -> None:
        """Log a connection refused by ``max_connections``: the first at once, then a count every few seconds."""
        self.refused += 1
        now = _time()
        if now - self._refusals_logged_at >= REFUSAL_LOG_EVERY:
            log.warning(
                "refused %s and %d more connections since the last report: %d open (--max-connections %d)",
                address.decode(),
                self.refused - 1,
                len(self.connections),
                self.max_connections,
                extra=ANNOUNCE,
            )
            self._refusals_logged_at = now
            self.refused = 0

    def start_sweeping(self) -> None:
        """Run ``sweep`` every SWEEP_EVERY seconds from now on (called with the first connection)."""
        if self._sweeper is None:
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            self._sweeper = loop.call_later(SWEEP_EVERY, self.sweep)

    def sweep(self) -> None:
        """Close connections stuck mid-packet, over the output cap too long, or (with ``idle_timeout``) silent;
        give the kept free heap back once the board has been still for ``RELEASE_WHEN_QUIET`` seconds, once per
        quiet spell (``board.now`` is the time of the latest read, or of a due epoch job or timeout)."""
        assert self._loop is not None
        self._sweeper = self._loop.call_later(SWEEP_EVERY, self.sweep)
        now = _time()
        if self._released_at < self.board.now <= now - RELEASE_WHEN_QUIET:
            release_kept_memory()
            self._released_at = now
        limits = self.limits
        for connection, since in list(self.partial.items()):
            if connection.switch.total:
                self.partial[connection] = now  # we stopped reading it: its clock starts again when we resume
            elif limits.packet_timeout > 0 and now - since > limits.packet_timeout:
                connection.drop("a packet unfinished %.0f s after its first byte (--packet-timeout)", now - since)
        for connection, since in list(self.over.items()):
            if now - since > limits.output_timeout:
                connection.drop(
                    "%d bytes of output unread for %.0f s (--max-output-bytes, --output-timeout)",
                    connection.unread(),
                    now - since,
                )
        if limits.idle_timeout > 0:
            for connection in list(self.connections.values()):
                if connection.switch.total:
                    connection.last_read = now
                elif now - connection.last_read > limits.idle_timeout:
                    connection.drop("silent for %.0f s (--idle-timeout)", now - connection.last_read)

    def schedule_timer(self) -> None:
        """Arm one loop timer for the board's next deadline (epoch job due, CAN_DO_TIMEOUT expiry)."""
        deadline = self.board.next_deadline()
        if deadline is None or (self._timer is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._timer_at = deadline
        self._timer = loop.call_later(max(deadline - _time(), 0.0), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.board.tick(_time())
        self.flush()
        self.schedule_timer()

    def close(self) -> None:
        """Cancel the timers and close every connection."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self.connections.values()):
            connection.abort()


def _describe(transport: asyncio.BaseTransport) -> tuple[int, bytes, bytes, bool]:
    """(fd, peer IP, ``ip:port``, is loopback-or-Unix) of an accepted connection."""
    sock = transport.get_extra_info("socket")
    fd = sock.fileno() if sock is not None else -1
    peername = transport.get_extra_info("peername")
    if isinstance(peername, tuple) and len(peername) >= 2:
        host = str(peername[0])
        try:
            local = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
        except ValueError:
            local = False
        if host.startswith("::ffff:"):
            host = host[7:]
        return fd, host.encode(), f"{host}:{peername[1]}".encode(), local
    return fd, b"unix", b"unix:%d" % fd, True


class Connection(asyncio.Protocol):
    """One client, worker or admin connection: decodes its bytes and hands them to the board."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.decoder = Decoder(text=True, max_packet_size=hub.max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        """None until registered, and for a connection refused by ``max_connections``."""
        self.closing = False
        """Reading has stopped; the transport closes once the pending output (the reason included) is written."""
        self.half_closed = False
        """The peer shut down its sending side: the transport closes once nothing it waits on is left."""
        self.switch = ReadSwitch()
        self.throttling: set[Connection] = set()
        """Producers this connection keeps paused while its own output is over the cap (one THROTTLED each)."""
        self.last_read = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Set socket options, describe the peer, register it with the board (or refuse it: too many)."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        hub = self.hub
        fd, host, address, local = _describe(transport)
        if len(hub.connections) >= hub.max_connections:
            self.closing = True
            hub.refuse(address)
            transport.write(pack_header(RES, _ERROR, len(_SERVER_BUSY)) + _SERVER_BUSY)
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                hub.socket_options.apply(sock)
            except OSError as exc:
                log.warning("could not set socket options: %s", exc)
        limits = hub.limits
        transport.set_write_buffer_limits(high=limits.max_output_bytes, low=limits.max_output_bytes // 4)
        self.peer = peer = hub.board.connect(fd=fd, host=host, address=address, local=local)
        hub.connections[peer] = self
        hub.start_sweeping()
        self.last_read = _time()
        if hub.reading_paused:
            self.switch.pause(_BACKLOG, transport)  # the durable queue is behind: new peers wait like the others
        log.debug("accepted %s", address)

    def data_received(self, data: bytes) -> None:
        """Decode and dispatch every complete message; replies go out when the batch is done."""
        if self.closing:
            return
        if self.switch.total:
            # Delivered although reading is paused (uvloop, right after connection_made): kept for the resume.
            self.switch.deferred.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        peer = self.peer
        assert peer is not None
        hub = self.hub
        board = hub.board
        board.now = now = self.last_read = _time()
        hub.producer = self
        dispatch = hub.dispatch
        read = 0
        try:
            for read, item in enumerate(self.decoder.feed(data), 1):  # noqa: B007 (read is counted after the loop)
                if type(item) is Packet:
                    ptype, args, magic = item
                    if magic == REQ:
                        dispatch[ptype](peer, args)
                    else:
                        board.stats.bad_input["magic"] += 1  # counted
                        peer.send(_ERROR, _INVALID_MAGIC)
                else:
                    assert isinstance(item, bytes)
                    reply, action = hub.admin.handle(peer, item)
                    peer.send_text(reply)
                    if action is not _NO_ACTION:
                        self._act(action)
                        break
        except ProtocolError as exc:
            board.stats.bad_input["packet"] += 1  # counted
            log.info("closing %s: %s", peer.address, exc)
            peer.send(_ERROR, b"INVALID_PACKET\0" + str(exc).encode("utf-8", "replace"))
            self._close_soon()
        except Exception:
            # A bug must cost this connection, never the server.
            log.exception("internal error serving %s", peer.address)
            peer.send(_ERROR, b"SERVER_ERROR\0Internal server error")
            self._close_soon()
        board.stats.packets += read  # counted
        hub.flush()
        hub.producer = None
        if self.decoder.buffered and not self.closing:
            if read or self not in hub.partial:
                hub.partial[self] = now  # a new packet began in this read
        elif hub.partial:
            hub.partial.pop(self, None)

    def _act(self, action: AdminAction) -> None:
        self._close_soon()
        if action is not AdminAction.CLOSE:
            self.hub.on_action(action)

    def _close_soon(self) -> None:
        """Stop reading; close once the pending output (the reason included) is written."""
        self.closing = True
        if self.transport is not None and self.peer is not None:
            self.hub.board.disconnect(self.peer)
            if not self.peer.out:
                self.transport.close()

    def write_out(self, out: list[bytes]) -> None:
        """Write one batch of this peer's output in one call; past the output cap, throttle whoever produced it
        (or, past 4 times the cap, drop this connection)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(out) == 1:
            transport.write(out[0])
        elif out:
            if len(out) < 8 and max(map(len, out)) >= LARGE_PAYLOAD:
                transport.writelines(out)  # a large payload goes out as its own buffer, uncopied
            else:
                transport.write(b"".join(out))
        if self.closing or (self.half_closed and not self._waits()):
            transport.close()
        elif self.switch.held(_OUTPUT):
            unread = transport.get_write_buffer_size()
            if unread > self.hub.limits.hard_output_bytes:
                self.drop("%d bytes of output unread (4 x --max-output-bytes)", unread)
                return
            producer = self.hub.producer
            if producer is not None and producer is not self and producer not in self.throttling:
                self.throttling.add(producer)
                producer.switch.pause(_THROTTLED, producer.transport)

    def unread(self) -> int:
        """Bytes written to this connection that its peer has not read yet (still in our buffer)."""
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def _waits(self) -> bool:
        """Whether the peer still waits on a job's result or a held JOB_CREATED."""
        peer = self.peer
        return peer is not None and bool(peer.waiting or peer.held)

    def eof_received(self) -> bool:
        """The peer half-closed (SHUT_WR) after its last request: keep the socket open for the results of the jobs
        it waits on (returning True), closing after the last one; TLS cannot half-close, so it closes at once."""
        self.half_closed = True
        transport = self.transport
        return transport is not None and transport.get_extra_info("sslcontext") is None and self._waits()

    def pause_writing(self) -> None:
        """The peer's unread output passed the cap: stop reading its requests; throttle producers from now on."""
        self.hub.over.setdefault(self, _time())
        self.switch.pause(_OUTPUT, self.transport)

    def resume_writing(self) -> None:
        """Output drained below a quarter of the cap: read requests again, release the producers."""
        self.hub.over.pop(self, None)
        self.resume(_OUTPUT)
        self._release_producers()

    def _release_producers(self) -> None:
        producers, self.throttling = self.throttling, set()
        for producer in producers:
            producer.resume(_THROTTLED)

    def resume(self, reason: Pause) -> None:
        """Lift one pause ``reason``; once reading resumes, parse what arrived while paused (next loop turn)."""
        if self.switch.resume(reason, self.transport) and self.switch.deferred:
            loop = self.hub._loop or asyncio.get_running_loop()
            loop.call_soon(self._replay)

    def _replay(self) -> None:
        data = self.switch.take_deferred()
        if data:
            self.data_received(data)

    def drop(self, why: str, *args: object) -> None:
        """Abort the connection now, logging why (a limit it broke)."""
        address = self.peer.address.decode() if self.peer is not None else "?"
        log.warning("closing %s: " + why, address, *args, extra=ANNOUNCE)
        self.closing = True
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Requeue the peer's jobs, detach its waits, drop its output; nothing refers to this connection after."""
        hub = self.hub
        peer = self.peer
        self.closing = True
        self.transport = None
        if peer is None:
            return  # refused: never registered
        hub.connections.pop(peer, None)
        hub.partial.pop(self, None)
        hub.over.pop(self, None)
        self._release_producers()
        for reader in hub.over:
            reader.throttling.discard(self)
        hub.board.disconnect(peer)
        peer.discard()
        if self.decoder.buffered >= RELEASE_AFTER:
            self.decoder.discard()
            release_free_memory()
        hub.flush()
        log.debug("closed %s", peer.address)

    def abort(self) -> None:
        """Drop the connection without flushing (server stop)."""
        if self.transport is not None:
            self.transport.abort()
