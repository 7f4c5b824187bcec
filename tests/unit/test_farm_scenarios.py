"""Whole jobs through the in-memory farm: client session → board → worker session and back, real bytes, time
passed in, no sockets."""

from __future__ import annotations

import pytest

from gearworks.client.jobs import (
    CompleteEvent,
    CreatedEvent,
    DataEvent,
    ExceptionEvent,
    FailEvent,
    JobHandle,
    Priority,
    StatusEvent,
)
from gearworks.errors import ConnectionLost, JobException, JobFailed
from gearworks.worker import WorkerJob
from gearworks.worker.session import Handler
from tests.farm import Farm


def reverse(job: WorkerJob) -> bytes:
    return job.workload[::-1]


def recorder() -> tuple[list[bytes], Handler]:
    """A handler that records each workload it runs, and its record."""
    ran: list[bytes] = []

    def record(job: WorkerJob) -> bytes:
        ran.append(job.workload)
        return b""

    return ran, record


def test_a_foreground_job_reports_status_and_data_then_completes() -> None:
    def rev(job: WorkerJob) -> bytes:
        job.status(1, 2)
        job.data(b"half")
        return job.workload[::-1]

    farm = Farm()
    worker = farm.worker({"rev": rev})
    job = farm.client().submit("rev", b"hello")
    farm.run_until_idle()
    assert job.events == [
        CreatedEvent(JobHandle(b"H:farm:1")),
        StatusEvent(1, 2),
        DataEvent(b"half"),
        CompleteEvent(b"olleh"),
    ]
    assert job.handle == b"H:farm:1"
    assert job.result() == b"olleh"
    assert not farm.board.jobs
    assert worker.session.handled == 1


def test_a_background_job_runs_with_nobody_waiting() -> None:
    ran, record = recorder()
    farm = Farm()
    job = farm.client().submit("log", b"line", background=True)
    farm.run_until_idle()
    assert job.events[0] == CreatedEvent(JobHandle(b"H:farm:1"))  # and no CompleteEvent once #13 item 6 lands
    assert farm.admin(b"status") == b"log\t1\t0\t0\n.\n"
    farm.worker({"log": record})
    farm.run_until_idle()
    assert ran == [b"line"]
    assert farm.admin(b"status") == b"log\t0\t0\t1\n.\n"


def test_two_clients_with_one_unique_key_share_one_run() -> None:
    calls: list[bytes] = []

    def rev(job: WorkerJob) -> bytes:
        calls.append(job.unique)
        return job.workload[::-1]

    farm = Farm()
    first = farm.client().submit("rev", b"abc", unique=b"same")
    second = farm.client().submit("rev", b"other payload", unique=b"same")
    farm.run_until_idle()
    assert first.handle == second.handle == b"H:farm:1"
    farm.worker({"rev": rev})
    farm.run_until_idle()
    assert calls == [b"same"]
    assert first.result() == second.result() == b"cba"


def test_a_job_whose_worker_is_lost_is_requeued_and_run_by_another() -> None:
    farm = Farm()
    lost = farm.worker({"rev": reverse}, autorun=False)
    job = farm.client().submit("rev", b"abc")
    farm.run_until_idle()
    assert [held.handle for held in lost.held] == [b"H:farm:1"]
    backup = farm.worker({"rev": reverse})
    farm.run_until_idle()  # asleep: the only job is held
    assert backup.session.handled == 0
    lost.lose()
    farm.run_until_idle()
    assert job.result() == b"cba"
    assert backup.session.handled == 1
    assert not farm.board.jobs


def test_a_client_lost_before_any_worker_came_abandons_its_job() -> None:
    farm = Farm()
    client = farm.client()
    job = client.submit("rev", b"abc")
    farm.run_until_idle()
    client.lose()
    with pytest.raises(ConnectionLost):
        job.result()
    assert not farm.board.jobs
    assert farm.admin(b"status") == b".\n"


def test_can_do_timeout_fails_the_job_once_its_seconds_pass() -> None:
    farm = Farm()
    worker = farm.worker({"slow": reverse}, timeouts={"slow": 5.0}, autorun=False)
    job = farm.client().submit("slow", b"abc")
    farm.run_until_idle()
    assert len(worker.held) == 1
    farm.advance(4.9)
    assert not job.done
    farm.advance(0.1)
    with pytest.raises(JobFailed):
        job.result()
    (late,) = worker.held
    worker.run(late)  # the late result gets ERROR JOB_NOT_FOUND, which the worker expects
    farm.run_until_idle()
    assert isinstance(job.events[-1], FailEvent)
    assert farm.admin(b"status") == b"slow\t0\t0\t1\n.\n"


def test_an_epoch_job_runs_only_once_its_time_comes() -> None:
    ran: list[float] = []
    farm = Farm()

    def stamp(job: WorkerJob) -> bytes:
        ran.append(farm.now)
        return b""

    farm.worker({"later": stamp})
    farm.client().submit("later", b"x", when=farm.now + 60)
    farm.run_until_idle()
    farm.advance(59)
    assert ran == []
    farm.advance(1)
    assert ran == [farm.now]


def test_priorities_run_high_then_normal_then_low_in_order_within_each() -> None:
    order, record = recorder()
    farm = Farm()
    client = farm.client()
    queued: list[tuple[bytes, Priority]] = [(b"low1", "low"), (b"n1", "normal"), (b"high1", "high"), (b"low2", "low")]
    for workload, priority in queued:
        client.submit("p", workload, background=True, priority=priority)
    client.submit("p", b"high2", priority="high")
    farm.run_until_idle()
    farm.worker({"p": record})
    farm.run_until_idle()
    assert order == [b"high1", b"high2", b"n1", b"low1", b"low2"]


def test_a_handler_that_raises_fails_its_job_and_the_worker_keeps_serving() -> None:
    def picky(job: WorkerJob) -> bytes:
        if job.workload == b"bad":
            raise ValueError("no")
        return b"ok"

    farm = Farm()
    worker = farm.worker({"picky": picky})
    client = farm.client(exceptions=True)
    bad, good = client.submit("picky", b"bad"), client.submit("picky", b"good")
    farm.run_until_idle()
    with pytest.raises(JobException):
        bad.result()
    assert ExceptionEvent(b"ValueError: no") in bad.events
    assert good.result() == b"ok"
    assert worker.session.handled == 2
