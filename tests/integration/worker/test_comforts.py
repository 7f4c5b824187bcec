"""What users of arq and the seeds expect of both workers, against both servers: codecs, drain-and-exit (burst),
``grab_one``, hooks, ``stop()`` from another thread, and polling a sleeping connection for epoch jobs."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable

from gearworks import Admin, AsyncWorker, Client, JSONCodec, Worker
from gearworks.worker import WorkerJob
from tests.integration.worker.conftest import WorkerFactory
from tests.servers import ServerProcess


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def registered(address: str, function: bytes) -> bool:
    with Admin(address) as admin:
        return any(row.function == function and row.workers > 0 for row in admin.status())


def test_a_codec_decodes_workloads_and_encodes_results(
    job_server: ServerProcess, worker_factory: WorkerFactory
) -> None:
    running = worker_factory(job_server.address, codec=JSONCodec())

    @running.worker.register("total")
    def total(job: WorkerJob) -> object:
        return {"sum": sum(job.value["numbers"]), "raw": len(job.workload)}

    running.start()
    with Client(job_server.address) as client:
        result = client.do("total", json.dumps({"numbers": [1, 2, 3]}), timeout=10)
    assert json.loads(result) == {"sum": 6, "raw": 22}


def test_epoch_job_runs_on_time_through_polling(job_server: ServerProcess, worker_factory: WorkerFactory) -> None:
    """gearmand wakes no sleeping worker when an epoch job comes due: the worker's poll GRABs it."""
    ran: list[float] = []
    running = worker_factory(job_server.address, poll_interval=1.0)
    running.worker.register("remind", lambda job: ran.append(time.time()))
    running.start()
    wait_until(lambda: registered(job_server.address, b"remind"))
    time.sleep(0.3)  # the worker is asleep before the job is queued
    with Client(job_server.address) as client:
        when = math.ceil(time.time()) + 2
        client.submit_background("remind", "later", when=when)
    wait_until(lambda: bool(ran), timeout=10)
    assert when <= ran[0] <= when + 1.0 + 1.0, f"ran {ran[0] - when:+.2f}s from its time"


def test_burst_drains_every_queued_job_then_returns(job_server: ServerProcess, worker_factory: WorkerFactory) -> None:
    seen: list[bytes] = []
    running = worker_factory(job_server.address, concurrency=2, poll_interval=None)
    running.worker.register("batch", lambda job: seen.append(job.workload))
    with Client(job_server.address) as client:
        for n in range(10):
            client.submit_background("batch", f"item {n}")
    running.start(burst=True)
    assert running.join(timeout=20) == 10
    assert sorted(seen) == sorted(f"item {n}".encode() for n in range(10))


def test_burst_on_an_empty_queue_returns_at_once(job_server: ServerProcess, worker_factory: WorkerFactory) -> None:
    running = worker_factory(job_server.address, poll_interval=None)
    running.worker.register("nothing", lambda job: b"")
    started = time.monotonic()
    running.start(burst=True)
    assert running.join(timeout=10) == 0
    assert time.monotonic() - started < 2.0


def test_grab_one_runs_one_job_or_returns_none(job_server: ServerProcess, kind: str) -> None:
    worker = AsyncWorker(job_server.address) if kind == "async" else Worker(job_server.address)
    worker.register("once", lambda job: job.workload.upper())
    with Client(job_server.address) as client:
        client.submit_background("once", "first")
        client.submit_background("once", "second")
    grab = (lambda: asyncio.run(worker.grab_one())) if isinstance(worker, AsyncWorker) else worker.grab_one
    assert [job.workload if job else None for job in (grab(), grab())] == [b"first", b"second"]
    started = time.monotonic()
    assert grab() is None
    assert time.monotonic() - started < 2.0
