"""Both clients against the Perl Gearman::Server (Debian gearman-server), with gearworks' Worker serving the jobs
(it falls back to GRAB_JOB there). That server answers SUBMIT_JOB_HIGH_BG/LOW/LOW_BG/EPOCH and GET_STATUS_UNIQUE
with ERROR server_error, ends a job only at WORK_FAIL/WORK_COMPLETE (WORK_EXCEPTION goes only to clients that set
the option), and never answers a GET_STATUS whose handle holds a NUL byte."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gearworks.errors import ConnectionLost, JobException, JobFailed, ServerError
from gearworks.worker import WorkerJob
from tests.conftest import require
from tests.integration.client.conftest import FrontFactory
from tests.integration.worker.conftest import RunningWorker
from tests.servers import PERL_GEARMAND, ServerProcess, perl_gearmand_process, running


@pytest.fixture
def perl_server() -> Iterator[ServerProcess]:
    require(PERL_GEARMAND, "gearman-server")
    with running(perl_gearmand_process()) as server:
        yield server


class Handlers:
    """The worker's functions; ``background`` records the workloads of jobs nobody waits for."""

    def __init__(self) -> None:
        self.background: list[bytes] = []
        self.lock = threading.Lock()

    def upper(self, job: WorkerJob) -> bytes:
        job.status(1, 2)
        return job.workload.upper()

    def record(self, job: WorkerJob) -> bytes:
        with self.lock:
            self.background.append(job.workload)
        return b""

    def boom(self, job: WorkerJob) -> bytes:
        raise ValueError(job.workload.decode())


@pytest.fixture
def handlers(perl_server: ServerProcess) -> Iterator[Handlers]:
    """gearworks' blocking Worker serving ``Handlers`` on the Perl server."""
    handlers = Handlers()
    worker = RunningWorker("blocking", perl_server.address, concurrency=2)
    worker.worker.register("upper", handlers.upper)
    worker.worker.register("record", handlers.record)
    worker.worker.register("boom", handlers.boom)
    worker.start()
    try:
        yield handlers
    finally:
        worker.stop()
        worker.join()


def test_foreground_background_and_task_set(
    perl_server: ServerProcess, handlers: Handlers, front: FrontFactory
) -> None:
    client = front(perl_server.address, command_timeout=10)
    assert client.do("upper", b"abc", timeout=10) == b"ABC"
    assert client.do("upper", b"", timeout=10) == b""
    handle = client.submit_background("record", b"bg1")
    assert handle.startswith(b"H:")
    tasks: list[tuple[str, bytes, dict[str, Any]]] = [("upper", b"t%d" % i, {}) for i in range(50)]
    jobs = client.task_set(tasks, timeout=10)
    assert [job.result() for job in jobs] == [b"T%d" % i for i in range(50)]
    deadline = time.monotonic() + 10
    while handlers.background != [b"bg1"] or client.get_status(handle).known:
        assert time.monotonic() < deadline, handlers.background
        time.sleep(0.02)
    assert (client.client.pending_count, client.client.active_count) == (0, 0)


def test_failed_jobs_fail_with_and_without_the_exceptions_option(
    perl_server: ServerProcess, handlers: Handlers, front: FrontFactory
) -> None:
    plain = front(perl_server.address, command_timeout=10)
    with pytest.raises(JobFailed) as failed:
        plain.do("boom", b"plain", timeout=10)
    assert not isinstance(failed.value, JobException)
    with_exceptions = front(perl_server.address, command_timeout=10, exceptions=True)
    with pytest.raises(JobException) as raised:
        with_exceptions.do("boom", b"detail", timeout=10)
    assert b"detail" in raised.value.data
    assert with_exceptions.do("upper", b"after", timeout=10) == b"AFTER"


def test_requests_the_server_lacks_or_never_answers_fail_instead_of_hanging(
    perl_server: ServerProcess, front: FrontFactory
) -> None:
    client = front(perl_server.address, command_timeout=1)
    with pytest.raises(ServerError, match="server_error"):
        client.submit_background("record", b"x", priority="high")
    with pytest.raises(ServerError, match="server_error"):
        client.get_status_unique(b"some-unique")
    with pytest.raises(ServerError, match="unknown_option"):
        client.option("no-such-option")
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="no reply"):
        client.get_status(b"H:nul\0handle")  # Gearman::Server::Client::CMD_get_status returns without a reply
    assert time.monotonic() - started < 5
    assert client.echo(b"still usable") == b"still usable"
