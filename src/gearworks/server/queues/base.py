"""The interface between the job board and a store of background jobs.

The board collects the background jobs created and finished during one event-loop turn and hands them to the
store in one ``apply`` call, before that turn's replies are written: a durable store that returns has made the
jobs safe, so JOB_CREATED is never sent for a job a crash could lose. ``load`` gives them back at start-up.
Jobs handed out ``--job-retries`` times without finishing are buried in a separate dead-letter store (``buried``,
``unburied``, ``load_dead``) in the same transactions.
Every call but ``load`` at start-up comes from one writer thread (``server/persistence.py``), and each is bounded by
the store's timeout, so a hung backend costs QUEUE_ERROR replies, never a frozen server.

One owner per store: a durable store opened with an ``owner`` claims its table (or key prefix) for that server
(a file lock, an advisory lock, a lock key) and refuses to open when another live server holds it. ``owner=None``
opens without claiming, for tools that only look.

Several servers share one store by agreement (``--cluster``, #17) through a ``SharedStore``: every stored job
belongs to one member node, and each node keeps a lease (id, address, expiry by the store's clock) that it renews;
a live node adopts, in one transaction, the jobs of a node whose lease has been expired for another lease timeout.
Backends live next to this module; none may touch the board or sockets.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gearworks.errors import QueueError

__all__ = ["LeaseLost", "Member", "Membership", "QueueStore", "SharedStore", "StoredJob", "node_id", "node_is_gone"]


@dataclass(frozen=True, slots=True)
class StoredJob:
    """What a store keeps of one background job; enough to rebuild it after a restart.

    ``priority`` is 0 (high), 1 (normal) or 2 (low); ``when`` is the epoch time a delayed job runs at, 0 if none;
    ``retries`` is how many times a dead letter was handed out (0 for live jobs).
    """

    handle: bytes
    function: bytes
    unique: bytes
    workload: bytes
    priority: int
    when: float = 0.0
    reducer: bytes | None = None
    retries: int = 0


class QueueStore(Protocol):
    """A place to keep background jobs across restarts."""

    @property
    def durable(self) -> bool:
        """False for stores that keep nothing, so the board need not collect changes for them."""
        ...

    def load(self) -> Iterable[StoredJob]:
        """Every job stored and not yet removed, oldest first."""
        ...

    def load_dead(self) -> Iterable[StoredJob]:
        """Every dead letter stored and not yet requeued or purged, oldest first."""
        ...

    def apply(
        self,
        added: Sequence[StoredJob],
        removed: Sequence[bytes],
        buried: Sequence[StoredJob] = (),
        unburied: Sequence[bytes] = (),
    ) -> None:
        """Forget the ``removed`` handles and store ``added`` jobs; forget the ``unburied`` dead letters and store
        the ``buried`` ones: all as one transaction. Removals go first, so a handle in both lists ends up stored
        (a dead letter requeued, or a job buried again, within one batch).

        Raises:
            QueueError: the write failed or timed out (the store's ``timeout``). The submitters of the batch's new
                jobs get ERROR QUEUE_ERROR; its other changes are kept and written again later.
        """
        ...

    def heartbeat(self) -> None:
        """Called about once a second between writes: renew an owner lock, notice a lost connection and reconnect
        before the next write needs it. Never raises (failures are logged and retried at the next heartbeat)."""
        ...

    def close(self) -> None:
        """Release connections and files (and the owner claim)."""
        ...


@dataclass(frozen=True, slots=True)
class Membership:
    """What a shared store is told about the node that opens it.

    ``node`` names the node in job ownership and handles (``--node-id``); ``address`` is where its clients and
    workers reach it (shown by admin ``cluster``); ``process`` is ``node_id()`` (``host:pid``), so a restarted node
    can tell its own stale lease from a live twin; ``lease_timeout`` is how long a lease lasts after a renewal.
    """

    cluster: str
    node: str
    address: str
    process: str
    lease_timeout: float


@dataclass(frozen=True, slots=True)
class Member:
    """One node of a shared store as the store sees it: its lease expires in ``expires_in`` seconds (negative
    once expired; peers take over at minus its ``lease_timeout``) and it owns ``jobs`` stored jobs."""

    node: str
    address: str
    expires_in: float
    lease_timeout: float
    jobs: int


class LeaseLost(QueueError):
    """This node's lease is gone: a peer adopted its jobs. Nothing is written until the node joins again."""


class SharedStore(QueueStore, Protocol):
    """A store several servers write, each owning its jobs under a lease. ``load`` and ``load_dead`` return only
    this node's jobs; ``apply`` raises ``LeaseLost`` (writing nothing) once a peer took this node's jobs over."""

    membership: Membership

    def link(self) -> SharedStore:
        """A second connection to the same store for the same node (the lease thread's own), not yet joined."""
        ...

    def renew(self, *, join: bool = False) -> bool:
        """Extend this node's lease by ``lease_timeout`` from now (the store's clock) and record its current
        ``membership.address``; False when it is gone (a peer adopted this node). With ``join``, create it (or take
        over this node's own stale one).

        Raises:
            QueueError: the store did not answer, or (``join``) a live process already holds this node id.
        """
        ...

    def expired(self) -> list[str]:
        """Peers whose lease expired more than their ``lease_timeout`` ago: theirs to take over."""
        ...

    def adopt(self, node: str) -> tuple[list[StoredJob], list[StoredJob]]:
        """Take over ``node``'s jobs and dead letters in one transaction, oldest first, and drop its lease; nothing
        if its lease was renewed or another peer adopted it first."""
        ...

    def locate(self, handle: bytes) -> tuple[str, str] | None:
        """The (node, address) owning the stored job ``handle``, or None."""
        ...

    def members(self) -> list[Member]:
        """Every node with a lease, and how many jobs each owns."""
        ...


def node_id() -> str:
    """This server as an owner claim names it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def node_is_gone(owner: str) -> bool:
    """Whether ``owner`` (a ``node_id``) names a process of this host that no longer exists: its claim is stale (a
    server killed with SIGKILL and restarted before its lock key expired)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
