"""The workers and the admin client against gearworks' own server, where CAN_DO_TIMEOUT is in seconds and fails the
job (PROTOCOL.md §7) and ``shutdown graceful`` is supported."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gearworks.admin import Admin
from gearworks.worker import WorkerJob
from tests.integration.worker.conftest import WorkerFactory, php_client
from tests.servers import ServerProcess, gearworks_process, running


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with running(gearworks_process()) as started:
        yield started


def test_outcomes_and_can_do_timeout_in_seconds(server: ServerProcess, worker_factory: WorkerFactory) -> None:
    running_worker = worker_factory(server.address, concurrency=2)

    @running_worker.worker.register("gw", timeout=1)
    def handler(job: WorkerJob) -> bytes:
        job.status(1, 2)
        if job.workload == b"raise":
            raise ValueError("boom")
        if job.workload == b"slow":
            time.sleep(2)
        return b"ok:" + job.unique

    running_worker.start()
    done = php_client(server.port, "gw", "fine")[-1]
    assert done["data"] == "ok:" + done["unique"]
    raised = php_client(server.port, "gw", "raise")[-1]
    assert (raised["event"], raised["data"]) == ("exception", "ValueError: boom")
    started = time.monotonic()
    timed_out = php_client(server.port, "gw", "slow")[-1]  # the status may come too late to be forwarded
    assert timed_out["event"] == "fail"
    assert time.monotonic() - started < 1.9


def test_admin_shutdown_graceful_stops_the_server(server: ServerProcess) -> None:
    with Admin(server.address) as admin:
        assert admin.getpid() == server.pid
        admin.shutdown(graceful=True)
    assert server.proc is not None
    assert server.proc.wait(10) == 0
