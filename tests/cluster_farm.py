"""A farm of ``gearworks serve --cluster`` nodes on one store for the takeover tests and ``bench/takeover.py``:
nodes with short leases, raw workers that record every job they are handed, and a background storm over all nodes
with one node killed with SIGKILL in the middle of it, judged by what the clients and workers saw."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.integration.queues.test_durability import Storm
from tests.peers.raw_worker import Handler, RawJob, RawWorker
from tests.servers import ServerProcess, gearworks_process

LEASE_INTERVAL = 0.2
LEASE_TIMEOUT = 1.0
TAKEOVER_LIMIT = 2 * LEASE_TIMEOUT + 2.0
"""Seconds from a kill to the first of the dead node's jobs running on a peer that the tests accept."""


def cluster_node(url: str, cluster: str, node: str, *options: str) -> ServerProcess:
    """A cluster node on ``url`` with the tests' short leases (not started yet)."""
    lease = ("--lease-interval", str(LEASE_INTERVAL), "--lease-timeout", str(LEASE_TIMEOUT))
    return gearworks_process("-q", url, "--cluster", cluster, "--node-id", node, *lease, *options)


@dataclass(frozen=True, slots=True)
class Run:
    """A job handed to a worker: when (monotonic), by which node (its index), its handle and unique key."""

    at: float
    node: int
    handle: bytes
    unique: bytes


def recorder(node: int, runs: list[Run], delay: float = 0.0) -> Handler:
    """A RawWorker handler that records each job it is handed as a ``Run`` of ``node`` and completes it after
    ``delay`` seconds."""

    def run(job: RawJob) -> bytes:
        runs.append(Run(time.monotonic(), node, job.handle, job.unique))
        if delay:
            time.sleep(delay)
        return b"ok"

    return run


@dataclass
class KillOutcome:
    """What a storm with one node killed did: acknowledged uniques, every hand-out, the victim and the kill time."""

    acked: set[bytes]
    runs: list[Run]
    victim: int
    victim_prefix: bytes
    kill_at: float
    adopted: int = 0
    ran: Counter[bytes] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.ran = Counter(run.unique for run in self.runs)

    @property
    def lost(self) -> set[bytes]:
        """Acknowledged jobs that never ran."""
        return self.acked - set(self.ran)

    @property
    def duplicates(self) -> int:
        """Hand-outs beyond the first of each job."""
        return sum(count - 1 for count in self.ran.values() if count > 1)

    @property
    def unexplained_duplicates(self) -> set[bytes]:
        """Jobs run twice that the victim had not handed out (at-least-once allows only those). Every run the
        victim's worker recorded was handed out before the victim died, even one read from the socket after the kill
        (so ``at`` is not compared with ``kill_at``)."""
        handed_by_victim = {run.unique for run in self.runs if run.node == self.victim}
        return {unique for unique, count in self.ran.items() if count > 1} - handed_by_victim

    @property
    def takeover_s(self) -> float | None:
        """Seconds from the kill to the first of the victim's jobs handed out by a peer (None: none was left)."""
        times = [
            run.at for run in self.runs
            if run.node != self.victim and run.unique.startswith(self.victim_prefix) and run.at > self.kill_at
        ]  # fmt: skip
        return min(times) - self.kill_at if times else None


def wait_acked(storms: list[Storm], deadline: float) -> None:
    """Until every submission so far got its reply (or the deadline)."""
    while time.monotonic() < deadline:
        if all(len(s.acked) + len(s.errors) >= len(s.sent) or s.done.is_set() for s in storms):
            return
        time.sleep(0.01)


def storm_and_kill(nodes: list[ServerProcess], *, victim: int, tag: str = "", backlog: int = 3000,
                   delay: float = 0.0005, timeout: float = 60.0) -> KillOutcome:  # fmt: skip
    """Queue ``backlog`` background jobs on each node, start a worker on each, SIGKILL ``nodes[victim]`` while they
    work and the others still take submissions, then wait until every acknowledged job ran (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    prefixes = [f"{tag}n{index}-".encode() for index in range(len(nodes))]
    storms = [Storm(node.port, prefix) for node, prefix in zip(nodes, prefixes, strict=True)]
    for _ in range(0, backlog, 500):
        for storm in storms:
            storm.send(500)
        wait_acked(storms, deadline)
    runs: list[Run] = []
    workers = [RawWorker(node.port, {b"storm": recorder(index, runs, delay)}).start() for index, node in
               enumerate(nodes)]  # fmt: skip
    time.sleep(0.3)
    os.kill(nodes[victim].pid, signal.SIGKILL)
    kill_at = time.monotonic()
    nodes[victim].kill()  # reap
    survivors = [storm for index, storm in enumerate(storms) if index != victim]
    for storm in survivors:
        storm.send(1000)
    wait_acked(storms, deadline)
    for storm in storms:
        storm.close()
    acked = set().union(*(set(storm.acked) for storm in storms))
    while time.monotonic() < deadline and not acked <= {run.unique for run in runs}:
        time.sleep(0.05)
    for worker in workers:
        worker.stop()
    return KillOutcome(acked, runs, victim, prefixes[victim], kill_at)
