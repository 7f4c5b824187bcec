"""Cluster mode (``--cluster``): several ``gearworks serve`` on one PostgreSQL or Redis, real processes killed with
SIGKILL or frozen with SIGSTOP. Every acknowledged job runs, a dead node's jobs run on a peer within
2 x lease timeout + 2 s, a job runs twice only if the dead node had handed it out, a frozen node hands out nothing
once its lease is gone and each job keeps one owner, a restarted node loads only what it still owns, adopted jobs
keep their unique keys, GET_STATUS answers from the store (in request order with the connection's other replies),
admin ``cluster`` answers in request order from the table as of the last renewal (with the bound port as address),
and clients fail over."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gearworks import Client
from gearworks.admin import Admin, ClusterNode
from gearworks.errors import ConnectionLost
from gearworks.protocol import Decoder, Packet, PacketType, encode
from tests.cluster_farm import TAKEOVER_LIMIT, Run, cluster_node, recorder, storm_and_kill
from tests.integration.queues.test_durability import drain, submit_one
from tests.peers.raw_worker import RawJob, RawWorker
from tests.servers import ServerProcess, gearworks_process

_names = itertools.count()


@pytest.fixture(params=["postgresql", "redis"])
def shared_url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        redis: ServerProcess = request.getfixturevalue("redis_server")
        return f"redis://127.0.0.1:{redis.port}/0"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def cluster() -> str:
    """A cluster name of its own (its own table or key prefix) for each test."""
    return f"t{os.getpid()}_{next(_names)}"


@pytest.fixture
def nodes(shared_url: str, cluster: str) -> Iterator[list[ServerProcess]]:
    """Three started nodes ``n0``, ``n1``, ``n2``; stopped afterwards."""
    farm = [cluster_node(shared_url, cluster, f"n{index}", "--verbose", "WARNING") for index in range(3)]
    try:
        for node in farm:
            node.start()
        yield farm
    finally:
        for node in farm:
            node.close()


def cluster_rows(node: ServerProcess) -> list[ClusterNode]:
    with Admin(node.address) as admin:
        return list(admin.cluster())


def settled_rows(node: ServerProcess, view: Callable[[list[ClusterNode]], object], expected: object,
                 timeout: float = 5.0) -> None:  # fmt: skip
    """Admin ``cluster`` on ``node`` until ``view(rows) == expected`` (AssertionError after timeout): the node reads
    the membership table after each lease renewal, so its reply may be one lease interval old."""
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster_rows(node)
        if view(rows) == expected:
            return
        assert time.monotonic() < deadline, f"admin cluster never showed {expected!r}: {rows}"
        time.sleep(0.05)


def _owned(rows: list[ClusterNode]) -> dict[str, int]:
    return {row.node: row.jobs for row in rows}


def wait_owned(node: ServerProcess, owner: str, count: int, timeout: float = 10.0) -> list[ClusterNode]:
    """Admin ``cluster`` on ``node`` once ``owner`` owns ``count`` stored jobs (AssertionError after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster_rows(node)
        if any(row.node == owner and row.jobs == count for row in rows):
            return rows
        assert time.monotonic() < deadline, f"{owner} never owned {count} jobs: {rows}"
        time.sleep(0.1)


def test_killing_one_of_three_nodes_mid_storm_loses_no_acknowledged_job(nodes: list[ServerProcess]) -> None:
    outcome = storm_and_kill(nodes, victim=0)
    assert len(outcome.acked) >= 3 * 3000
    assert not outcome.lost, f"{len(outcome.lost)} acknowledged jobs lost, e.g. {sorted(outcome.lost)[:5]}"
    takeover = outcome.takeover_s
    assert takeover is not None, "the victim had no queued jobs left to adopt"
    assert takeover <= TAKEOVER_LIMIT, f"the dead node's jobs started running {takeover:.2f} s after the kill"
    assert not outcome.unexplained_duplicates, "jobs ran twice that the dead node had not handed out"
    assert {run.node for run in outcome.runs if run.unique.startswith(b"n0-") and run.node != 0} <= {1, 2}
    # The dead node's lease went with its jobs; everything ran and was removed.
    settled_rows(nodes[1], _owned, {"n1": 0, "n2": 0})


def test_a_restarted_node_loads_nothing_adopted_and_adopted_jobs_keep_unique_keys_and_status(
    shared_url: str, cluster: str
) -> None:
    a = cluster_node(shared_url, cluster, "a")
    b = cluster_node(shared_url, cluster, "b")
    try:
        a.start()
        b.start()
        created = [submit_one(a.port, PacketType.SUBMIT_JOB_BG, b"adopt", b"u%d" % n, b"x") for n in range(20)]
        handles = [packet.args[0] for packet in created]
        assert all(handle.startswith(b"H:a:") for handle in handles)
        settled_rows(b, lambda rows: [(row.node, row.jobs, row.state) for row in rows], [("a", 20, "live"),
                                                                                         ("b", 0, "self")])  # fmt: skip
        a.kill()
        wait_owned(b, "b", 20)
        again = submit_one(b.port, PacketType.SUBMIT_JOB_BG, b"adopt", b"u3", b"y")
        assert again.args[0] == handles[3]  # coalesced with the adopted job
        a.start()  # the same node id: its lease is new, its old jobs are b's
        with Admin(a.address) as admin:
            assert [row.function for row in admin.status()] == []
        status = submit_one(a.port, PacketType.GET_STATUS, handles[0])
        assert status.args == (handles[0], b"1", b"0", b"0", b"0")  # known: from the store
        assert drain(a.port, b"adopt", idle=0.5) == []
        assert sorted(drain(b.port, b"adopt")) == sorted(b"u%d" % n for n in range(20))
        unknown = submit_one(a.port, PacketType.GET_STATUS, handles[0])
        assert unknown.args == (handles[0], b"0", b"0", b"0", b"0")
        settled_rows(a, _owned, {"a": 0, "b": 0})
    finally:
        a.close()
        b.close()


def test_get_status_from_the_store_pipelined_with_echo_answers_in_request_order(shared_url: str, cluster: str) -> None:
    a = cluster_node(shared_url, cluster, "a")
    b = cluster_node(shared_url, cluster, "b")
    try:
        a.start()
        b.start()
        handle = submit_one(b.port, PacketType.SUBMIT_JOB_BG, b"elsewhere", b"e1", b"x").args[0]
        assert handle.startswith(b"H:b:")  # unknown to a's board: a answers from the store
        with socket.create_connection(("127.0.0.1", a.port), timeout=5) as sock:
            decoder = Decoder()
            for round_ in range(5):
                echo = b"after-%d" % round_
                sock.sendall(encode(PacketType.GET_STATUS, [handle]) + encode(PacketType.ECHO_REQ, [echo]))  # one write
                replies: list[Packet] = []
                while len(replies) < 2:
                    chunk = sock.recv(65536)
                    assert chunk, f"connection closed after {replies!r}"
                    replies += [packet for packet in decoder.feed(chunk) if isinstance(packet, Packet)]
                assert [packet.type for packet in replies] == [PacketType.STATUS_RES, PacketType.ECHO_RES], replies
                assert replies[0].args == (handle, b"1", b"0", b"0", b"0")
                assert replies[1].args == (echo,)
    finally:
        a.close()
        b.close()


def _queue_grab(port: int) -> socket.socket:
    """A worker connection with CAN_DO and GRAB_JOB_UNIQ sent (answered whenever the node reads them)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(encode(PacketType.CAN_DO, [b"frozen"]) + encode(PacketType.GRAB_JOB_UNIQ))
    return sock


def _reply(sock: socket.socket) -> Packet:
    decoder = Decoder()
    while True:
        for packet in decoder.feed(sock.recv(65536)):
            assert isinstance(packet, Packet)
            return packet


def test_a_frozen_node_hands_out_nothing_once_its_lease_is_gone_and_each_job_keeps_one_owner(
    shared_url: str, cluster: str
) -> None:
    a = cluster_node(shared_url, cluster, "a", "--verbose", "WARNING")
    b = cluster_node(shared_url, cluster, "b")
    try:
        a.start()
        b.start()
        for n in range(20):
            submit_one(a.port, PacketType.SUBMIT_JOB_BG, b"frozen", b"f%d" % n, b"x")
        os.kill(a.pid, signal.SIGSTOP)
        try:
            worker = _queue_grab(a.port)  # read by a the moment it runs again
            wait_owned(b, "b", 20)  # a's lease expired: b adopted its jobs
        finally:
            os.kill(a.pid, signal.SIGCONT)
        with worker:
            assert _reply(worker).type is PacketType.NO_JOB  # fenced: nothing handed out
        deadline = time.monotonic() + 5
        while "forgot 20 stored jobs" not in a.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "forgot 20 stored jobs adopted by a peer" in a.log()
        assert drain(a.port, b"frozen", idle=0.5) == []
        assert sorted(drain(b.port, b"frozen")) == sorted(b"f%d" % n for n in range(20))
        assert submit_one(a.port, PacketType.SUBMIT_JOB_BG, b"later", b"l", b"x").type is PacketType.JOB_CREATED
        settled_rows(b, _owned, {"a": 1, "b": 0})  # a joined again
    finally:
        a.close()
        b.close()


def test_clients_fail_over_from_a_dead_node(postgres_url: str, cluster: str) -> None:
    a = cluster_node(postgres_url, cluster, "a")
    b = cluster_node(postgres_url, cluster, "b")
    runs: list[Run] = []
    released = threading.Event()

    def hold(job: RawJob) -> bytes:  # a's worker takes one job and answers only at the end of the test
        runs.append(Run(time.monotonic(), 0, job.handle, job.unique))
        released.wait(30)
        return b""

    workers: list[RawWorker] = []
    try:
        a.start()
        b.start()
        workers += [RawWorker(a.port, {b"fg": hold}).start(), RawWorker(b.port, {b"fg": recorder(1, runs)}).start()]
        with Client(a.address) as alone, Client([a.address, b.address]) as retrying:
            jobs = [retrying.submit("fg", b"%d" % n, retry_count=1) for n in range(4)]  # round-robin: 2 on a
            doomed = alone.submit("fg", b"only-a")
            alone.echo()  # a pump: every submission is written before the echo is answered
            retrying.echo()
            deadline = time.monotonic() + 5
            while not any(run.node == 0 for run in runs) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert any(run.node == 0 for run in runs)  # a's worker holds one job, a's other jobs wait
            assert not doomed.done
            killed = time.monotonic()
            a.kill()
            alone.wait([doomed], timeout=10)
            with pytest.raises(ConnectionLost):
                doomed.result()
            assert time.monotonic() - killed < 2  # at once, not after a timeout
            retrying.wait(jobs, timeout=10)
            assert [job.result() for job in jobs] == [b"ok"] * 4  # the two on a were resubmitted to b
            handles = [retrying.submit_background("bg", b"%d" % n) for n in range(10)]
            assert all(handle.startswith(b"H:b:") for handle in handles)  # a is down: every one went to b
    finally:
        released.set()
        for worker in workers:
            worker.stop()
        a.close()
        b.close()


def _admin_replies(sock: socket.socket, count: int) -> list[bytes]:
    """The next ``count`` admin replies on ``sock``: a block up to its ``.`` line, or one ``OK``/``ERR`` line."""
    data = b""
    replies: list[bytes] = []
    while len(replies) < count:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {replies!r} + {data!r}"
        data += chunk
        while len(replies) < count:
            end = None
            if data.startswith((b"OK", b"ERR")):
                end = data.find(b"\n")
                end = None if end < 0 else end + 1
            elif data.startswith(b".\n"):
                end = 2
            elif b"\n.\n" in data:
                end = data.index(b"\n.\n") + 3
            if end is None:
                break
            replies.append(data[:end])
            data = data[end:]
    assert data == b"", f"more than {count} replies: {data!r}"
    return replies


def test_admin_cluster_pipelined_with_other_commands_answers_in_request_order(shared_url: str, cluster: str) -> None:
    node = cluster_node(shared_url, cluster, "a")
    try:
        node.start()
        submit_one(node.port, PacketType.SUBMIT_JOB_BG, b"ordered", b"o1", b"x")
        # Started with -p 0: the lease records the bound port (from the first renewal after the bind).
        settled_rows(node, lambda rows: [(row.node, row.address, row.jobs, row.state) for row in rows],
                     [("a", f"127.0.0.1:{node.port}", 1, "self")])  # fmt: skip
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
            for _ in range(3):
                sock.sendall(b"cluster\r\nstatus\r\nversion\r\n")  # one write
                clustered, status, version = _admin_replies(sock, 3)
                rows = clustered.split(b"\n")[:-2]
                assert [row.split(b"\t")[0::3] for row in rows] == [[b"a", b"1"]], clustered
                assert 0 < float(rows[0].split(b"\t")[2]) <= 1.0  # lease left, counted down from the last read
                assert rows[0].endswith(b"\tself"), clustered
                assert status == b"ordered\t1\t0\t0\n.\n"
                assert version.startswith(b"OK "), version
    finally:
        node.close()


@pytest.mark.parametrize("queue", ["memory", "sqlite:///{tmp}/queue.db"])
def test_cluster_mode_refuses_a_store_that_cannot_be_shared(queue: str) -> None:
    server = gearworks_process("-q", queue, "--cluster", "c", "--node-id", "a")
    with pytest.raises(RuntimeError):
        server.start(timeout=10)
    assert "--cluster needs a queue every node reaches" in server.log()
    server.close()


def test_a_cluster_and_a_single_server_cannot_share_a_table(postgres_url: str, cluster: str) -> None:
    node = cluster_node(postgres_url, cluster, "a")
    single = gearworks_process("-q", postgres_url, "--libpq-table", f"gearworks_{cluster}")
    try:
        node.start()
        with pytest.raises(RuntimeError):
            single.start(timeout=10)
        assert "is in use by another server" in single.log()
    finally:
        node.close()
        single.close()
