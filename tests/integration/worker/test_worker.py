"""Both workers against the real C gearmand, fed by clients that are not ours (PHP's libgearman GearmanClient and
the ``gearman`` CLI): every handler outcome, concurrency, grab modes, CAN_DO_TIMEOUT, reconnects, two servers."""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gearworks.admin import Admin
from gearworks.protocol import PacketType, encode
from gearworks.worker import AsyncWorker, WorkerJob
from tests.conftest import ServerFactory
from tests.integration.worker.conftest import (
    RunningWorker,
    WorkerFactory,
    gearman_cli,
    php_client,
    php_submit_background,
)
from tests.servers import ServerProcess


def outcomes(job: WorkerJob) -> object:
    """Sends data, a warning and a status, then ends the way the workload says."""
    job.data(b"d1")
    job.warning("w1")
    job.status(1, 4)
    action = job.workload.decode()
    if action == "fail":
        job.fail()
        return None
    if action == "exception":
        job.exception("custom exception")
        return None
    if action == "raise":
        raise ValueError("boom")
    if action == "int":
        return 42
    return "result:" + action


@pytest.mark.parametrize(
    ("workload", "last"),
    [
        ("ok", {"event": "complete", "data": "result:ok"}),
        ("fail", {"event": "fail", "data": None}),
        ("exception", {"event": "exception", "data": "custom exception"}),
        ("raise", {"event": "exception", "data": "ValueError: boom"}),
        ("int", {"event": "exception"}),
    ],
)
def test_every_handler_outcome_reaches_a_php_client(
    gearmand: ServerProcess, worker_factory: WorkerFactory, workload: str, last: dict[str, object]
) -> None:
    running = worker_factory(gearmand.address)
    running.worker.register("outcomes", outcomes)
    running.start()
    events = php_client(gearmand.port, "outcomes", workload)
    assert [(event["event"], event["data"]) for event in events[:3]] == [
        ("data", "d1"),
        ("warning", "w1"),
        ("status", [1, 4]),
    ]
    assert len(events) == 4
    assert last.items() <= events[3].items()
    if workload == "int":
        assert "returned int" in events[3]["data"]
    # The worker survives every outcome, raises included.
    assert php_client(gearmand.port, "outcomes", "again")[-1]["data"] == "result:again"


def test_gearman_cli_client_gets_the_result(gearmand: ServerProcess, worker_factory: WorkerFactory) -> None:
    running = worker_factory(gearmand.address)

    @running.worker.register("reverse")
    def reverse(job: WorkerJob) -> bytes:
        return job.workload[::-1]

    running.start()
    assert gearman_cli(gearmand.port, "reverse", "hello") == b"olleh"


def test_slow_jobs_run_concurrently(gearmand: ServerProcess, worker_factory: WorkerFactory, kind: str) -> None:
    running = worker_factory(gearmand.address, concurrency=4)
    if kind == "async":

        async def slow(job: WorkerJob) -> bytes:
            await asyncio.sleep(0.8)
            return job.workload

        running.worker.register("slow", slow)
    else:

        def slow_blocking(job: WorkerJob) -> bytes:
            time.sleep(0.8)
            return job.workload

        running.worker.register("slow", slow_blocking)
    running.start()
    gearman_cli(gearmand.port, "slow", "warm-up")  # the worker is registered and idle
    started = time.monotonic()
    events = php_client(gearmand.port, "slow", "job", count=4)
    elapsed = time.monotonic() - started
    assert sorted(event["data"] for event in events) == [f"job-{i}" for i in range(4)]
    assert elapsed < 2.2, f"4 jobs of 0.8 s took {elapsed:.2f}s: not concurrent"


@pytest.mark.parametrize(("grab", "sees_unique"), [("uniq", True), ("all", True), ("job", False)])
def test_grab_modes_deliver_the_unique_key(
    gearmand: ServerProcess, worker_factory: WorkerFactory, grab: str, sees_unique: bool
) -> None:
    running = worker_factory(gearmand.address, grab=grab)

    @running.worker.register("uniq")
    def unique(job: WorkerJob) -> bytes:
        assert job.reducer is None
        return job.unique or b"<none>"

    running.start()
    (event,) = php_client(gearmand.port, "uniq", "x")
    assert event["data"] == (event["unique"] if sees_unique else "<none>")


def test_can_do_timeout_is_registered(gearmand: ServerProcess, worker_factory: WorkerFactory) -> None:
    """gearmand 1.1.20 reads the timeout as milliseconds (1 s floor) and requeues the job on expiry
    (PROTOCOL.md §3.9): a job outliving it is handed out a second time. One slot only: gearmand cancels the
    connection's timer on PRE_SLEEP, which an idle second slot would send."""
    calls: collections.Counter[bytes] = collections.Counter()
    running = worker_factory(gearmand.address)

    @running.worker.register("limited", timeout=1)
    def limited(job: WorkerJob) -> bytes:
        calls[job.handle] += 1
        if calls[job.handle] == 1:
            time.sleep(1.8)
            return b"first"
        return b"second"

    running.start()
    (event,) = php_client(gearmand.port, "limited", "x")
    assert event == {"event": "complete", "handle": event["handle"], "data": "second", "unique": event["unique"]}
    assert calls[event["handle"].encode()] == 2


def test_reconnects_after_gearmand_restart_and_reregisters(
    gearmand: ServerProcess, worker_factory: WorkerFactory
) -> None:
    running = worker_factory(gearmand.address, client_id="phoenix", reconnect_delay=0.05, max_reconnect_delay=0.5)

    @running.worker.register("echo")
    def echo(job: WorkerJob) -> bytes:
        return job.workload

    running.start()
    assert gearman_cli(gearmand.port, "echo", "before") == b"before"
    gearmand.kill()
    time.sleep(0.3)  # the worker notices and backs off
    gearmand.start()
    assert gearman_cli(gearmand.port, "echo", "after") == b"after"
    with Admin(gearmand.address) as admin:
        mine = [worker for worker in admin.workers() if worker.client_id == b"phoenix"]
    assert [worker.functions for worker in mine] == [(b"echo",)]


def test_job_of_a_vanished_server_is_dropped_and_redone(
    gearmand: ServerProcess, worker_factory: WorkerFactory, kind: str
) -> None:
    """The server dies mid-job; the handler's late result is dropped, the worker keeps serving after restart."""
    release = threading.Event()
    running = worker_factory(gearmand.address, concurrency=2, reconnect_delay=0.05, max_reconnect_delay=0.5)
    if kind == "async":

        async def stuck(job: WorkerJob) -> bytes:
            await asyncio.to_thread(release.wait, 10)
            job.data(b"late data")
            return b"late"

        running.worker.register("stuck", stuck)
    else:

        def stuck_blocking(job: WorkerJob) -> bytes:
            release.wait(10)
            job.data(b"late data")
            return b"late"

        running.worker.register("stuck", stuck_blocking)

    @running.worker.register("echo")
    def echo(job: WorkerJob) -> bytes:
        return job.workload

    running.start()
    php_submit_background(gearmand.port, "stuck", 1)
    with Admin(gearmand.address) as admin:
        deadline = time.monotonic() + 10
        while not any(row.function == b"stuck" and row.running == 1 for row in admin.status()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    gearmand.kill()
    gearmand.start()
    release.set()
    assert gearman_cli(gearmand.port, "echo", "alive") == b"alive"
    assert running.alive


def test_two_servers_are_served_fairly(gearmand_factory: ServerFactory, worker_factory: WorkerFactory) -> None:
    servers = [gearmand_factory(), gearmand_factory()]
    seen: list[bytes] = []
    running = worker_factory([server.address for server in servers])

    @running.worker.register("both")
    def both(job: WorkerJob) -> bytes:
        seen.append(job.workload)
        return b""

    for index, server in enumerate(servers):
        php_submit_background(server.port, "both", 20, workload=f"s{index}")
    running.start(max_jobs=20)
    assert running.join() == 20
    counts = collections.Counter(seen)
    assert counts[b"s0"] >= 5, counts
    assert counts[b"s1"] >= 5, counts


def test_work_one_runs_exactly_one_job(gearmand: ServerProcess, worker_factory: WorkerFactory) -> None:
    running = worker_factory(gearmand.address, concurrency=4)
    running.worker.register("one", lambda job: job.workload)
    php_submit_background(gearmand.port, "one", 3)
    running.start(max_jobs=1)
    assert running.join() == 1
    # gearmand's threads may answer an admin connection before they have read the worker's WORK_COMPLETE: wait
    # (bounded) for the counts to settle, then check they settled on one job done and two left.
    counts: list[tuple[int, int]] = []
    with Admin(gearmand.address) as admin:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            counts = [(row.total, row.running) for row in admin.status() if row.function == b"one"]
            if counts == [(2, 0)]:
                break
            time.sleep(0.02)
    assert counts == [(2, 0)]


def test_stop_drain_finishes_jobs_in_hand(gearmand: ServerProcess, worker_factory: WorkerFactory, kind: str) -> None:
    # Both handlers hold their job until the drain has been asked for: waiting for the server to show two running
    # jobs instead would also be true of jobs 3 and 4 once a loaded machine let jobs 1 and 2 end unseen.
    finished: list[bytes] = []
    started = threading.Semaphore(0)
    release = threading.Event()
    running = worker_factory(gearmand.address, concurrency=2)
    if kind == "async":

        async def slow(job: WorkerJob) -> bytes:
            started.release()
            await asyncio.to_thread(release.wait, 10)
            await asyncio.sleep(0.2)
            finished.append(job.handle)
            return b""

        running.worker.register("drain", slow)
    else:

        def slow_blocking(job: WorkerJob) -> bytes:
            started.release()
            release.wait(10)
            time.sleep(0.2)
            finished.append(job.handle)
            return b""

        running.worker.register("drain", slow_blocking)
    php_submit_background(gearmand.port, "drain", 5)
    running.start()
    for _ in range(2):
        assert started.acquire(timeout=10), "the worker never took two jobs"
    running.stop(drain=True)
    release.set()
    assert running.join() == 2
    assert len(finished) == 2
    with Admin(gearmand.address) as admin:
        # The server reads the worker's connection and this one on different threads: the worker's last
        # WORK_COMPLETEs may be counted a moment after it has closed.
        deadline = time.monotonic() + 5
        while (rows := [(row.total, row.running) for row in admin.status() if row.function == b"drain"]) != [(3, 0)]:
            assert time.monotonic() < deadline, rows
            time.sleep(0.01)


def cpu_bound(job: WorkerJob) -> bytes:
    """Picklable handler for the process pool: burns CPU, returns the workload's length."""
    total = sum(i * i for i in range(200_000))
    return b"%d:%d" % (len(job.workload), total % 7)


def test_process_pool_runs_picklable_handlers(gearmand: ServerProcess) -> None:
    running = RunningWorker("blocking", gearmand.address, concurrency=2, pool="process")
    running.worker.register("cpu", cpu_bound)
    running.start()
    try:
        events = php_client(gearmand.port, "cpu", "abc", count=3)
        assert sorted(event["data"] for event in events) == [f"5:{sum(i * i for i in range(200_000)) % 7}"] * 3
    finally:
        running.stop()
        running.join()


def test_thread_pool_executor_of_your_own(gearmand: ServerProcess) -> None:
    with ThreadPoolExecutor(2) as pool:
        running = RunningWorker("blocking", gearmand.address, concurrency=2, pool=pool)
        running.worker.register("mine", lambda job: threading.current_thread().name)
        running.start()
        try:
            (event,) = php_client(gearmand.port, "mine", "x")
            assert event["data"].startswith("ThreadPoolExecutor")
        finally:
            running.stop()
            running.join()


def test_async_worker_runs_on_uvloop(gearmand: ServerProcess) -> None:
    uvloop = pytest.importorskip("uvloop")
    worker = AsyncWorker(gearmand.address, concurrency=2)
    worker.register("uv", lambda job: b"uv:" + job.workload)
    handled: list[int] = []
    thread = threading.Thread(target=lambda: handled.append(uvloop.run(worker.work(1, handle_signals=False))))
    thread.start()
    try:
        assert gearman_cli(gearmand.port, "uv", "x") == b"uv:x"
    finally:
        thread.join(10)
    assert handled == [1]


def test_grab_job_all_delivers_the_reducer(gearmand: ServerProcess, worker_factory: WorkerFactory) -> None:
    seen: list[tuple[bytes, bytes | None, bytes]] = []
    running = worker_factory(gearmand.address, grab="all")

    @running.worker.register("mapper")
    def mapper(job: WorkerJob) -> bytes:
        seen.append((job.unique, job.reducer, job.workload))
        return b""

    with socket.create_connection(("127.0.0.1", gearmand.port), timeout=5) as sock:
        sock.sendall(encode(PacketType.SUBMIT_REDUCE_JOB_BACKGROUND, (b"mapper", b"mu", b"myreducer", b"agg", b"DATA")))
        sock.recv(100)  # JOB_CREATED
    running.start(max_jobs=1)
    assert running.join() == 1
    assert seen == [(b"mu", b"myreducer", b"DATA")]


def test_a_server_down_at_start_is_joined_when_it_comes_up(
    gearmand_factory: ServerFactory, worker_factory: WorkerFactory
) -> None:
    up, late = gearmand_factory(), gearmand_factory()
    late.stop()
    running = worker_factory([up.address, late.address], reconnect_delay=0.05, max_reconnect_delay=0.3)
    running.worker.register("echo", lambda job: job.workload)
    running.start()
    assert gearman_cli(up.port, "echo", "first") == b"first"
    late.start()
    assert gearman_cli(late.port, "echo", "second") == b"second"
    assert gearman_cli(up.port, "echo", "third") == b"third"


def test_prefix_namespaces_function_names(gearmand: ServerProcess, worker_factory: WorkerFactory) -> None:
    running = worker_factory(gearmand.address, prefix="app")
    running.worker.register("echo", lambda job: job.function)
    running.start()
    assert gearman_cli(gearmand.port, "app\techo", "x") == b"app\techo"
    with Admin(gearmand.address) as admin:
        assert any(row.function == b"app\techo" and row.workers == 1 for row in admin.status())


def test_registration_changes_while_working(gearmand: ServerProcess, worker_factory: WorkerFactory) -> None:
    """A handler (it runs on the worker's own thread) changes what the worker serves; gearmand sees it at once."""
    running = worker_factory(gearmand.address, client_id="before")
    worker = running.worker
    worker.register("victim", lambda job: b"")

    @worker.register("control")
    def control(job: WorkerJob) -> bytes:
        worker.unregister("victim")
        worker.set_client_id("after")
        worker.all_yours()  # gearmand answers ERROR INVALID_COMMAND: logged, nothing breaks
        return b"done"

    running.start()
    assert gearman_cli(gearmand.port, "control", "x") == b"done"
    with Admin(gearmand.address) as admin:
        rows = {row.function: row.workers for row in admin.status()}
        assert rows[b"victim"] == 0
        assert rows[b"control"] == 1
        assert [w.functions for w in admin.workers() if w.client_id == b"after"] == [(b"control",)]
    assert gearman_cli(gearmand.port, "control", "again") == b"done"
