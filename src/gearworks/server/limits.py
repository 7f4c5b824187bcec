"""What bounds a job server: its caps (``Limits``), the per-connection read switch they share (``ReadSwitch``), and
the open-files limit raised at start. No sockets are opened here and no job logic.

How the read switch works: a connection stops reading for any of three reasons, each counted apart —
``BACKLOG`` (the durable queue is behind: every connection), ``OUTPUT`` (its own unread output is over
``--max-output-bytes``: it may not ask for more) and ``THROTTLED`` (it produces output for a peer that is not
reading: once per such peer). The transport is paused when the total goes from 0 to 1 and resumed when it returns
to 0, so lifting one reason never resumes a connection another still holds. A transport may deliver data after
``pause_reading`` (uvloop starts reading after ``connection_made``, whatever was asked there): such data is kept
unparsed in the switch and handed back when reading resumes, so a pause always holds before the next packet.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["ANNOUNCE", "Limits", "Pause", "ReadSwitch", "raise_open_files_limit"]

log = logging.getLogger("gearworks.server")

ANNOUNCE = {"announce": True}
"""``extra`` for log records written whatever the ``--verbose`` level: where the server listens, the open-files
limit, and every connection a limit refused or closed (an operator must see those without turning logs up)."""

MiB = 1 << 20
RESERVED_FDS = 64
"""File descriptors kept back from ``--max-connections``' default: listeners, the store, log files, the loop."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps of ``gearworks serve`` (README "Limits"); 0 turns a cap off where noted.

    Attributes:
        max_connections: open connections beyond which the next is refused (logged); 0: the open-files limit
            minus ``RESERVED_FDS``.
        max_output_bytes: unread output per connection beyond which its producers are throttled and it stops being
            read; at 4 times this it is disconnected at once.
        output_timeout: seconds a connection may stay over ``max_output_bytes`` before it is disconnected.
        max_queued_bytes: total workload bytes of live jobs beyond which new submissions get ``ERROR QUEUE_ERROR``.
        idle_timeout: seconds without input after which a connection is closed; 0 (the default): never, since a
            sleeping worker is silent until its NOOP.
        packet_timeout: seconds a packet (or admin line) may take from its first byte to its last.
    """

    max_connections: int = 0
    max_output_bytes: int = 4 * MiB
    output_timeout: float = 30.0
    max_queued_bytes: int = 1024 * MiB
    idle_timeout: float = 0.0
    packet_timeout: float = 30.0

    @property
    def hard_output_bytes(self) -> int:
        """Unread output that disconnects a connection at once."""
        return 4 * self.max_output_bytes

    def connections_cap(self) -> int:
        """``max_connections``, or its default from the current open-files limit."""
        if self.max_connections > 0:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 1 << 20
        return max(soft - RESERVED_FDS, 1)


class Pause(IntEnum):
    """Why a connection is not being read."""

    BACKLOG = 0
    """The durable queue is behind (server-wide)."""
    OUTPUT = 1
    """The connection's own output is not being read."""
    THROTTLED = 2
    """The connection feeds peers that are not reading (counted once per such peer)."""


class ReadSwitch:
    """Counts the reasons a transport is paused; pauses on the first and resumes after the last."""

    __slots__ = ("counts", "deferred", "total")

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.total = 0
        self.deferred: list[bytes] = []
        """Data delivered while paused, not yet parsed (in arrival order)."""

    def pause(self, reason: Pause, transport: asyncio.Transport | None) -> None:
        """Add one ``reason``; the transport stops reading if it was the first."""
        self.counts[reason] += 1
        self.total += 1
        if self.total == 1 and transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume(self, reason: Pause, transport: asyncio.Transport | None) -> bool:
        """Remove one ``reason`` (ignored if it was not there); True when reading resumed, so the caller parses
        ``take_deferred()``."""
        if not self.counts[reason]:
            return False
        self.counts[reason] -= 1
        self.total -= 1
        if self.total or transport is None or transport.is_closing():
            return False
        transport.resume_reading()
        return True

    def held(self, reason: Pause) -> bool:
        """Whether ``reason`` is among the current ones."""
        return self.counts[reason] > 0

    def take_deferred(self) -> bytes:
        """The data kept while paused, joined, and forget it."""
        data = b"".join(self.deferred)
        self.deferred = []
        return data


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (logged); returns (before, after).

    At the usual soft limit of 1,024 a busy server runs out of descriptors and the loop can only drop the
    connections it cannot accept; the hard limit is what the administrator allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        log.info("open files limit %d (the hard limit)", soft, extra=ANNOUNCE)
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open files limit from %d to %d: %s", soft, hard, exc, extra=ANNOUNCE)
        return soft, soft
    log.info("open files limit raised from %d to %d", soft, hard, extra=ANNOUNCE)
    return soft, hard
