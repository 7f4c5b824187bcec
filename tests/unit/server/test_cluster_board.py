"""The cluster board without sockets or a store: fenced while its lease is in doubt, adopting jobs as a replay
would, forgetting the stored ones a peer adopted, waking sleepers when fencing ends."""

from __future__ import annotations

import time

from gearworks.protocol import RES, Decoder, Packet, PacketType
from gearworks.server.cluster import ClusterBoard, Lease
from gearworks.server.jobs import HandleFactory
from gearworks.server.peers import Peer
from gearworks.server.queues.base import StoredJob


def board(valid_for: float = 60.0) -> ClusterBoard:
    b = ClusterBoard(handles=HandleFactory(b"H:n1"))
    b.lease = Lease()
    b.lease.valid_until = time.monotonic() + valid_for
    return b


def packets(p: Peer) -> list[Packet | bytes]:
    return list(Decoder().feed(b"".join(chunk for chunk in p.take_out() if isinstance(chunk, bytes))))


def worker(b: ClusterBoard) -> Peer:
    p = b.connect()
    b.can_do(p, b"f")
    return p


def test_a_fenced_board_hands_out_nothing_and_lets_workers_sleep() -> None:
    b = board(valid_for=-1.0)
    b.submit(b"f", b"", b"x", background=True)
    w = worker(b)
    assert b.grab(w, 0.0) is None
    assert b.pre_sleep(w) is False  # asleep, not a NOOP loop
    b.lease.valid_until = time.monotonic() + 60
    b.wake_all()
    assert packets(w) == [Packet(PacketType.NOOP, (), RES)]
    job = b.grab(w, 0.0)
    assert job is not None
    assert job.workload == b"x"


def test_adopted_jobs_keep_order_priority_and_unique_keys() -> None:
    b = board()
    adopted = [
        StoredJob(b"H:n0:1", b"f", b"a", b"first", 1),
        StoredJob(b"H:n0:2", b"f", b"b", b"urgent", 0),
        StoredJob(b"H:n0:3", b"f", b"c", b"second", 1),
    ]
    assert b.restore(adopted, time.time()) == 3
    again = b.submit(b"f", b"b", b"dup", background=True)
    assert again.handle == b"H:n0:2"  # coalesced with the adopted job
    w = worker(b)
    order = [job.workload for job in iter(lambda: b.grab(w, 0.0), None)]
    assert order == [b"urgent", b"first", b"second"]


def test_disown_forgets_stored_jobs_and_dead_letters_but_not_foreground_jobs() -> None:
    b = board()
    b.restore([StoredJob(b"H:n1:1", b"f", b"", b"stored", 1)], time.time(),
              [StoredJob(b"H:n1:2", b"f", b"", b"dead", 1, retries=3)])  # fmt: skip
    client = b.connect()
    b.submit(b"f", b"", b"foreground", client=client)
    assert b.disown() == 1
    assert b.dead == {}
    assert [job.workload for job in b.jobs.values()] == [b"foreground"]


def test_a_held_reply_keeps_the_replies_after_it_until_filled() -> None:
    ready: list[Peer] = []
    p = Peer(ready)
    marker = p.hold_reply(int(PacketType.STATUS_RES))
    p.send(int(PacketType.ECHO_RES), b"later")
    assert ready == [p]
    ready.clear()
    assert p.take_out() == []  # nothing overtakes the pending reply
    assert p.held == 1
    p.fill(marker, b"H:x:1\x000\x000\x000\x000")
    assert ready == [p]  # back on ready for the driver
    replies = list(Decoder().feed(b"".join(p.take_out())))
    assert [packet.type for packet in replies if isinstance(packet, Packet)] == [
        PacketType.STATUS_RES,
        PacketType.ECHO_RES,
    ]
    assert p.held == 0
    assert p.out == []
