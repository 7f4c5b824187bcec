"""How both workers connect: through outages (a server that comes up late, a connect that raises something
unexpected, a server that never answers SYN and must not stall the others), over TLS and Unix sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gearworks import Client
from gearworks.connection.aio import open_connection
from gearworks.connection.pending import PendingConnection
from gearworks.worker import blocking as blocking_worker
from tests.conftest import ServerFactory
from tests.integration.client.test_connections import certificates  # noqa: F401 - the throwaway CA fixture
from tests.integration.worker.conftest import WorkerFactory
from tests.servers import free_port, gearworks_process, wait_for_path

CERTIFICATE_FILES = {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key"}


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address on 127.0.0.1 that never completes a connect: a socket listening with a backlog of 0, never
    accepting, its queue already full, so Linux drops every further SYN (the connect waits for its timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        for sock in (*fillers, listener):
            sock.close()


def test_a_worker_started_before_its_server_connects_once_the_server_is_up(
    gearmand_factory: ServerFactory, worker_factory: WorkerFactory
) -> None:
    port = free_port()
    running = worker_factory(f"127.0.0.1:{port}", reconnect_delay=0.05, max_reconnect_delay=0.3)
    running.worker.register("echo", lambda job: job.workload)
    running.start()
    time.sleep(0.5)  # several failed attempts against the closed port
    server = gearmand_factory(port=port)
    with Client(server.address) as client:
        assert client.do("echo", "late", timeout=10) == b"late"
    assert running.alive


def test_an_unexpected_error_while_connecting_is_logged_and_retried(
    gearmand_factory: ServerFactory,
    worker_factory: WorkerFactory,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the async worker's reconnect task died in its gather and work() hung with no connection; the
    blocking worker's loop crashed."""
    server = gearmand_factory()
    failures = 3

    def boom() -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("a bug in connecting")

    if kind == "async":

        async def flaky_open(*args: Any) -> Any:
            boom()
            return await open_connection(*args)

        monkeypatch.setattr("gearworks.worker.aio.open_connection", flaky_open)
    else:

        class FlakyPending(PendingConnection):
            def advance(self) -> Any:
                boom()
                return super().advance()

        monkeypatch.setattr(blocking_worker, "PendingConnection", FlakyPending)
    running = worker_factory(server.address, reconnect_delay=0.05, max_reconnect_delay=0.2)
    running.worker.register("echo", lambda job: job.workload)
    running.start()
    with Client(server.address) as client:
        assert client.do("echo", "still here", timeout=10) == b"still here"
    assert failures == 0
    assert running.alive
    assert "a bug in connecting" in caplog.text


def test_a_server_that_never_answers_does_not_stall_the_others(
    gearmand_factory: ServerFactory, worker_factory: WorkerFactory, blackhole: str
) -> None:
    """Before: the blocking worker connected in its loop, so every retry of the silent server stopped the healthy
    one for connect_timeout."""
    server = gearmand_factory()
    running = worker_factory(
        [blackhole, server.address], connect_timeout=1.0, reconnect_delay=0.05, max_reconnect_delay=0.1
    )
    running.worker.register("echo", lambda job: job.workload)
    started = time.monotonic()
    running.start()
    slowest = 0.0
    with Client(server.address) as client:
        while time.monotonic() - started < 4.0:  # several connect timeouts and retries of the blackhole
            sent = time.monotonic()
            assert client.do("echo", "x", timeout=10) == b"x"
            slowest = max(slowest, time.monotonic() - sent)
            time.sleep(0.05)
    assert slowest < 0.5, f"a job waited {slowest:.2f}s behind the silent server's connect"


def test_tls_with_ca_and_client_certificate_files(certificates: Path, worker_factory: WorkerFactory) -> None:  # noqa: F811
    """The README's worker TLS example: the same keywords as the clients', connected without blocking too."""
    server = gearworks_process(
        "--ssl",
        "--ssl-certificate",
        str(certificates / "server.pem"),
        "--ssl-key",
        str(certificates / "server.key"),
        "--ssl-ca-file",
        str(certificates / "ca.pem"),
    )
    files = {name: str(certificates / file) for name, file in CERTIFICATE_FILES.items()}
    try:
        server.start()
        running = worker_factory(server.address, **files)
        running.worker.register("echo", lambda job: job.workload)
        running.start()
        with Client(
            server.address, ca_file=files["ca_file"], cert_file=files["cert_file"], key_file=files["key_file"]
        ) as client:
            assert client.do("echo", "over tls", timeout=10) == b"over tls"
    finally:
        server.close()


def test_unix_socket(tmp_path: Path, worker_factory: WorkerFactory) -> None:
    path = tmp_path / "gearworks.sock"
    server = gearworks_process("--unix-socket", str(path))
    try:
        server.start()
        wait_for_path(path)
        running = worker_factory(str(path))
        running.worker.register("echo", lambda job: job.workload)
        running.start()
        with Client(str(path)) as client:
            assert client.do("echo", "over a unix socket", timeout=10) == b"over a unix socket"
    finally:
        server.close()
