"""A connection as the job board sees it: what it can do, the jobs it holds and waits on, and its output.

How this works: a ``Peer`` is the board's ``Outbox`` for one connection (``protocol.outbox``). The board appends
encoded reply packets (and admin reply bytes) with ``send``/``send_with``/``send_text``; the first chunk since the
last drain puts the peer on ``Board.ready``, and after each batch the driver (``connections``) takes
``board.take_ready()`` and writes each peer's ``take_out()``. A background job not yet safe in a durable queue is
acknowledged with ``hold(job)``: its marker, and everything queued behind it, stays in ``out`` until the job's
write is done (then JOB_CREATED) or lost (then ERROR QUEUE_ERROR); ``Board.written`` puts such peers back on
``ready``. A reply that another thread works out (cluster GET_STATUS from the store) is queued in place as a
``PendingReply`` with ``hold_reply``; ``fill`` gives it its body and puts the peer back on ``ready``, so replies
leave in request order. A peer never references its connection or any callback, so a closed connection is freed by
reference counting alone. No sockets and no job logic here.
"""

from __future__ import annotations

from enum import Enum

from gearworks.protocol.codec import LARGE_PAYLOAD, pack_header
from gearworks.protocol.outbox import Outbox
from gearworks.protocol.packets import RES, PacketType
from gearworks.server.jobs import Function, Job, WriteState

__all__ = ["Peer", "PendingReply", "SleepState"]

_ERROR = int(PacketType.ERROR)
_JOB_CREATED = int(PacketType.JOB_CREATED)
_PENDING, _FAILED = WriteState.PENDING, WriteState.FAILED
_QUEUE_WRITE_FAILED = b"QUEUE_ERROR\0The job could not be written to the persistent queue"
_QUEUE_WRITE_FAILED_PACKET = pack_header(RES, _ERROR, len(_QUEUE_WRITE_FAILED)) + _QUEUE_WRITE_FAILED


class SleepState(Enum):
    """Whether a worker waits for a NOOP (PROTOCOL.md §3.8); the board's ``pre_sleep``/``_wake`` move it."""

    AWAKE = "awake"
    """Not sleeping: a queued job does not NOOP it."""
    ASLEEP = "asleep"
    """Sent PRE_SLEEP with nothing to do: listed in ``sleepers`` of each of its functions until NOOPed or it grabs."""


_AWAKE = SleepState.AWAKE


class PendingReply:
    """A reply queued in request order before its body is known; ``Peer.fill`` completes it."""

    __slots__ = ("body", "ptype")

    def __init__(self, ptype: int) -> None:
        self.ptype = ptype
        self.body: bytes | None = None


class Peer(Outbox["bytes | Job[Peer] | PendingReply"]):
    """One connection's state: its abilities (function → CAN_DO_TIMEOUT seconds, oldest registration first; a set,
    so duplicates cost nothing), sleep state, jobs it runs and waits on, client id and options, and its output."""

    __slots__ = (
        "__weakref__",  # one per connection: lets tests and tools check that a closed peer is gone
        "abilities",
        "address",
        "client_id",
        "excepted",
        "exceptions",
        "fd",
        "held",
        "host",
        "local",
        "running",
        "sleep",
        "waiting",
    )

    def __init__(
        self,
        ready: list[Peer],
        *,
        fd: int = -1,
        host: bytes = b"127.0.0.1",
        address: bytes = b"127.0.0.1:0",
        local: bool = True,
    ) -> None:
        super().__init__(ready)
        self.fd = fd
        self.host = host
        self.address = address
        self.local = local
        self.abilities: dict[Function[Peer], float] = {}
        self.client_id = b"-"
        self.exceptions = False
        self.excepted: bytes | None = None
        """The handle this worker last ended with WORK_EXCEPTION, until a WORK_FAIL or WORK_COMPLETE for it."""
        self.sleep = _AWAKE
        self.running: set[Job[Peer]] = set()
        self.waiting: dict[Job[Peer], None] = {}
        self.held = 0
        """Markers in ``out``: JOB_CREATED waiting for durable writes, and ``PendingReply`` waiting for a body."""

    def __repr__(self) -> str:
        return f"<Peer fd={self.fd} {self.address!r}>"

    def send(self, ptype: int, body: bytes) -> None:
        """Queue one response packet."""
        out = self.out
        if not out:
            self.ready.append(self)
        if len(body) < LARGE_PAYLOAD:
            out.append(pack_header(RES, ptype, len(body)) + body)
        else:
            out.append(pack_header(RES, ptype, len(body)))
            out.append(body)

    def send_with(self, ptype: int, head: bytes, payload: bytes) -> None:
        """Queue a packet whose body is ``head + payload`` without copying a large payload."""
        out = self.out
        if not out:
            self.ready.append(self)
        size = len(head) + len(payload)
        if len(payload) < LARGE_PAYLOAD:
            out.append(pack_header(RES, ptype, size) + head + payload)
        else:
            out.append(pack_header(RES, ptype, size) + head)
            out.append(payload)

    def send_text(self, data: bytes) -> None:
        """Queue an admin reply."""
        self.push(data)

    def hold(self, job: Job[Peer]) -> None:
        """Queue the JOB_CREATED of a job not yet safe in the durable queue: it and everything queued after it wait
        until the job's write is done (then JOB_CREATED) or failed (then ERROR QUEUE_ERROR)."""
        self.push(job)
        self.held += 1

    def hold_reply(self, ptype: int) -> PendingReply:
        """Queue a ``ptype`` reply whose body comes later (``fill``): it and everything queued after it wait."""
        marker = PendingReply(ptype)
        self.push(marker)
        self.held += 1
        return marker

    def fill(self, marker: PendingReply, body: bytes) -> None:
        """Give a held reply its body; the peer goes back on ``ready`` (the driver writes what is now free)."""
        marker.body = body
        self.ready.append(self)

    # Only bytes leave: a marker becomes its reply or stays queued, so the narrower list type is sound.
    def take_out(self) -> list[bytes]:  # type: ignore[override]
        """Everything that may be written now, in order; output behind a pending JOB_CREATED or an unfilled
        ``PendingReply`` stays queued."""
        out = self.out
        if not self.held:
            self.out = []
            return out  # type: ignore[return-value]  # no Job markers when nothing is held
        ready: list[bytes] = []
        for index, item in enumerate(out):
            if isinstance(item, bytes):
                ready.append(item)
                continue
            if isinstance(item, PendingReply):
                body = item.body
                if body is None:
                    self.out = out[index:]
                    return ready
                self.held -= 1
                ready.append(pack_header(RES, item.ptype, len(body)) + body)
                continue
            if item.written is _PENDING:
                self.out = out[index:]
                return ready
            self.held -= 1
            if item.written is _FAILED:
                ready.append(_QUEUE_WRITE_FAILED_PACKET)
            else:
                ready.append(pack_header(RES, _JOB_CREATED, len(item.handle)) + item.handle)
        self.out = []
        return ready

    def discard(self) -> None:
        """Drop everything queued, held markers included (the connection is gone)."""
        self.out = []
        self.held = 0
