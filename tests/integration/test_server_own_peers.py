"""gearworks' own Client and Worker through gearworks' server (the peers nobody else wrote are in tests/interop)."""

from __future__ import annotations

import threading

from gearworks.client import Client
from gearworks.worker import Worker, WorkerJob
from tests.servers import ServerProcess


def reverse(job: WorkerJob) -> bytes:
    return job.workload[::-1]


def test_own_client_and_worker_round_trip(gearworks_server: ServerProcess) -> None:
    address = gearworks_server.address
    worker = Worker(address)
    worker.register("rev", reverse)
    thread = threading.Thread(target=worker.work, kwargs={"max_jobs": 3, "handle_signals": False}, daemon=True)
    thread.start()
    try:
        with Client(address) as client:
            assert client.echo(b"ping") == b"ping"
            assert client.do("rev", b"hello") == b"olleh"
            assert client.do("rev", b"x" * (1 << 20)) == b"x" * (1 << 20)
            assert client.do("rev", b"") == b""
        thread.join(10)
        assert not thread.is_alive()
    finally:
        worker.stop()
        thread.join(10)
