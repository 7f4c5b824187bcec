"""The batch API of both clients (``submit_background_many``, ``submit_many``) against C gearmand and
``gearworks serve``: the same jobs as one submission per workload, in order."""

from __future__ import annotations

import pytest

from gearworks.codecs import JSONCodec
from tests.integration.client.conftest import FrontFactory
from tests.peers.raw_worker import RawJob, RawWorker
from tests.servers import ServerProcess


def reverse(job: RawJob) -> bytes:
    return job.workload[::-1]


def echo(job: RawJob) -> bytes:
    return job.workload


def test_background_batch_returns_each_jobs_handle_in_order(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    handles = client.submit_background_many("later", [b"w%d" % n for n in range(2000)], priority="low")
    assert len(set(handles)) == 2000  # each job a unique of its own: none squashed
    assert all(handle.server is not None for handle in handles)
    statuses = [client.get_status(handle) for handle in (handles[0], handles[999], handles[-1])]
    assert all(status.known and not status.running for status in statuses)
    assert client.submit_background_many("later", []) == []
    (only,) = client.submit_background_many("later", [b"x"], unique=b"batch-u")
    assert client.get_status_unique(b"batch-u").known
    assert client.get_status(only).known


def test_foreground_batch_results_come_back_to_their_jobs(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    decoded = front(job_server.address, codec=JSONCodec())
    workloads = [b"job %d " % n + b"ab" * n for n in range(300)]
    documents = [{"n": n, "s": "ab" * n} for n in range(50)]
    with RawWorker(job_server.port, {b"reverse": reverse, b"echo": echo}):
        jobs = client.wait(client.submit_many("reverse", workloads, timeout=60), 60)
        echoed = decoded.wait(decoded.submit_many("echo", documents), 60)
    assert [job.result() for job in jobs] == [workload[::-1] for workload in workloads]
    assert len({job.handle for job in jobs}) == 300
    assert [job.result() for job in echoed] == documents


def test_bad_workload_raises_before_anything_is_sent(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    with pytest.raises(TypeError, match="int"):
        client.submit_background_many("later", [b"a", 1])
    assert client.client.pending_count == 0
    assert client.echo(b"still fine") == b"still fine"
