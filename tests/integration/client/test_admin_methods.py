"""The clients' admin methods (Gearman::Client's get_job_server_*), delegated to gearworks.admin."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from gearworks.connection import ServerAddress
from gearworks.errors import ServerError
from tests.conftest import require
from tests.integration.client.conftest import FrontFactory
from tests.peers.raw_worker import RawJob, RawWorker
from tests.servers import PERL_GEARMAND, ServerProcess, perl_gearmand_process


def echo(job: RawJob) -> bytes:
    return job.workload


def test_job_server_status_and_workers_per_server(
    gearmand_factory: Callable[..., ServerProcess], front: FrontFactory
) -> None:
    first, second = gearmand_factory(), gearmand_factory()
    client = front([first.address, second.address])
    with RawWorker(first.port, {b"adm-echo": echo}):
        handle = client.submit_background("adm-queued", b"x")
        status = client._either("get_job_server_status")
        assert set(status) == {ServerAddress.parse(first.address), ServerAddress.parse(second.address)}
        rows = {row.function: row for row in status[handle.server]}
        assert (rows[b"adm-queued"].total, rows[b"adm-queued"].queued, rows[b"adm-queued"].workers) == (1, 1, 0)
        workers = client._either("get_job_server_workers")
        registered = [w.functions for w in workers[ServerAddress.parse(first.address)]]
        assert (b"adm-echo",) in registered
    with pytest.raises(ServerError):
        client._either("get_job_server_jobs")  # gearmand has no `jobs` command


@pytest.fixture
def perl_server() -> Iterator[ServerProcess]:
    require(PERL_GEARMAND, "gearman-server")
    server = perl_gearmand_process()
    try:
        yield server.start()
    finally:
        server.close()


def test_job_server_jobs_and_clients_on_the_perl_server(perl_server: ServerProcess, front: FrontFactory) -> None:
    client = front(perl_server.address)
    waiting = client.submit("perl-fg", b"x", unique=b"uq2")
    client.submit_background("perl-bg", b"y", unique=b"uq1")
    deadline = time.monotonic() + 10
    while waiting.handle is None and time.monotonic() < deadline:
        client.echo(b"")
    (jobs,) = client._either("get_job_server_jobs").values()
    assert {(job.function, job.unique) for job in jobs} >= {(b"perl-fg", b"uq2"), (b"perl-bg", b"uq1")}
    (clients,) = client._either("get_job_server_clients").values()
    assert any(job.unique == b"uq2" for info in clients for job in info.jobs)
