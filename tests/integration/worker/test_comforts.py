"""What users of arq and the seeds expect of both workers, against both servers: codecs, drain-and-exit (burst),
``grab_one``, hooks, ``stop()`` from another thread, and polling a sleeping connection for epoch jobs."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from gearworks import Admin, AsyncWorker, Client, JSONCodec, Worker
from gearworks.worker import WorkerJob
from gearworks.worker.session import Outcome
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

    def grab() -> WorkerJob | None:
        return asyncio.run(worker.grab_one()) if isinstance(worker, AsyncWorker) else worker.grab_one()

    assert [job.workload if job else None for job in (grab(), grab())] == [b"first", b"second"]
    started = time.monotonic()
    assert grab() is None
    assert time.monotonic() - started < 2.0


def test_hooks_run_in_order_and_a_failing_job_hook_does_not_stop_the_worker(
    job_server: ServerProcess, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    work_thread: list[threading.Thread] = []

    def on_startup(worker: object) -> None:
        work_thread.append(threading.current_thread())
        calls.append("startup")

    def on_job_end(job: WorkerJob, outcome: Outcome) -> None:
        assert threading.current_thread() is work_thread[0]  # the thread running work(), not a pool thread
        calls.append(f"end {job.workload.decode()} {outcome.value!r}")
        raise RuntimeError("hook bug")

    hooks: dict[str, Any] = {
        "on_startup": on_startup,
        "on_shutdown": lambda worker: calls.append("shutdown"),
        "on_job_start": lambda job: calls.append(f"start {job.workload.decode()}"),
        "on_job_end": on_job_end,
    }
    if kind == "async":

        async def on_shutdown(worker: object) -> None:
            await asyncio.sleep(0)
            calls.append("shutdown")

        hooks["on_shutdown"] = on_shutdown
    worker = AsyncWorker(job_server.address, **hooks) if kind == "async" else Worker(job_server.address, **hooks)
    worker.register("job", lambda job: job.workload.upper())
    with Client(job_server.address) as client:
        for name in ("a", "b"):
            client.submit_background("job", name)
    handled = asyncio.run(worker.work(burst=True)) if isinstance(worker, AsyncWorker) else worker.work(burst=True)
    assert handled == 2
    assert calls == ["startup", "start a", "end a b'A'", "start b", "end b b'B'", "shutdown"]
    assert "on_job_end hook raised" in caplog.text


def test_a_raising_on_startup_fails_work(job_server: ServerProcess, kind: str) -> None:
    def on_startup(worker: object) -> None:
        raise RuntimeError("no database")

    worker = (AsyncWorker if kind == "async" else Worker)(job_server.address, on_startup=on_startup)
    with pytest.raises(RuntimeError, match="no database"):
        asyncio.run(worker.work()) if isinstance(worker, AsyncWorker) else worker.work()


def test_stop_from_another_thread_returns_work_promptly(job_server: ServerProcess, kind: str) -> None:
    """Both workers' stop() is safe from any thread (the async one hands itself to its loop)."""
    worker = AsyncWorker(job_server.address) if kind == "async" else Worker(job_server.address)
    worker.register("idle", lambda job: b"")
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            asyncio.run(worker.work(handle_signals=False))
            if isinstance(worker, AsyncWorker)
            else worker.work(handle_signals=False)
        )
    )
    thread.start()
    wait_until(lambda: registered(job_server.address, b"idle"))
    stopped = time.monotonic()
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert result == [0]
    assert time.monotonic() - stopped < 1.0
