"""Both workers against the Perl Gearman::Server (Debian gearman-server), which lacks GRAB_JOB_UNIQ and WORK_DATA,
keeps a job open after WORK_EXCEPTION, and enforces CAN_DO_TIMEOUT in seconds."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from gearworks.worker import WorkerJob
from tests.conftest import require
from tests.integration.worker.conftest import WorkerFactory
from tests.servers import PERL_GEARMAND, ServerProcess, perl_gearmand_process, running


@pytest.fixture
def perl_server() -> Iterator[ServerProcess]:
    require(PERL_GEARMAND, "gearman-server")
    with running(perl_gearmand_process()) as server:
        yield server


def cli(server: ServerProcess, function: str, workload: str) -> subprocess.CompletedProcess[bytes]:
    require("gearman", "gearman-tools")
    argv = ["gearman", "-h", "127.0.0.1", "-p", str(server.port), "-f", function, workload]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False)


def test_results_failures_and_timeouts(perl_server: ServerProcess, worker_factory: WorkerFactory) -> None:
    running = worker_factory(perl_server.address)

    @running.worker.register("perl")
    def handler(job: WorkerJob) -> bytes:
        job.status(1, 2)
        job.data(b"unsupported here")  # ERROR server_error from this server; must not confuse the worker
        if job.workload == b"raise":
            raise ValueError("boom")
        return job.workload.upper()

    @running.worker.register("slow", timeout=1)
    def slow(job: WorkerJob) -> bytes:
        time.sleep(2)
        return b"too late"

    running.start()
    done = cli(perl_server, "perl", "abc")
    assert (done.returncode, done.stdout) == (0, b"ABC50% Complete\n")
    failed = cli(perl_server, "perl", "raise")
    assert failed.returncode != 0
    assert b"fail" in (failed.stdout + failed.stderr).lower()
    started = time.monotonic()
    timed_out = cli(perl_server, "slow", "x")
    assert timed_out.returncode != 0
    assert time.monotonic() - started < 1.9  # failed by the server at 1 s, not by the handler's 2 s
    assert cli(perl_server, "perl", "again").stdout.startswith(b"AGAIN")
