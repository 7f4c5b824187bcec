"""Clients a Python team can trust (#13): threads, time, types, bounded writes, codecs, reuse; real servers."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from gearworks.admin import Admin
from gearworks.client import AsyncClient, Client, CreatedEvent
from gearworks.codecs import JSONCodec
from gearworks.errors import ClientClosed, JobTimeout
from tests.integration.client.conftest import Front, FrontFactory
from tests.peers.raw_worker import RawJob, RawWorker
from tests.servers import ServerProcess


def echo(job: RawJob) -> bytes:
    return job.workload


def reverse(job: RawJob) -> bytes:
    return job.workload[::-1]


def run_threads(count: int, target: object) -> list[BaseException]:
    """Run ``target(n)`` in ``count`` threads at once; the exceptions they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(n: int) -> None:
        start.wait()
        try:
            target(n)  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_one_blocking_client_serves_16_threads_of_200_jobs_each(job_server: ServerProcess) -> None:
    with (
        Client(job_server.address) as client,
        RawWorker(job_server.port, {b"rev": reverse}),
        RawWorker(job_server.port, {b"rev": reverse}),
    ):
        results: dict[int, list[bytes]] = {}

        def calls(n: int) -> None:
            results[n] = [client.do("rev", f"{n}:{i}", timeout=60) for i in range(200)]

        assert run_threads(16, calls) == []
        assert client.pending_count == client.active_count == 0
    for n in range(16):
        assert results[n] == [f"{n}:{i}".encode()[::-1] for i in range(200)]


def test_task_sets_waited_on_from_four_threads_at_once(job_server: ServerProcess) -> None:
    with Client(job_server.address) as client, RawWorker(job_server.port, {b"rev": reverse}):
        outcomes: dict[int, list[bytes]] = {}

        def task_set(n: int) -> None:
            tasks = client.task_set()
            for i in range(100):
                tasks.add("rev", f"{n}-{i}")
            tasks.wait(timeout=60)
            outcomes[n] = tasks.results()

        assert run_threads(4, task_set) == []
    for n in range(4):
        assert outcomes[n] == [f"{n}-{i}".encode()[::-1] for i in range(100)]


def test_threads_waiting_on_a_blocking_client_keep_their_own_timeouts(job_server: ServerProcess) -> None:
    with Client(job_server.address) as client, RawWorker(job_server.port, {b"rev": reverse}):
        took: dict[int, float] = {}

        def call(n: int) -> None:
            started = time.monotonic()
            if n % 2:
                with pytest.raises(JobTimeout):
                    client.do("nobody-works-this", b"", timeout=0.2 * n)
            else:
                assert client.do("rev", b"ab") == b"ba"
            took[n] = time.monotonic() - started

        assert run_threads(8, call) == []
    for n in (1, 3, 5, 7):
        assert 0.2 * n - 0.05 <= took[n] < 0.2 * n + 1.0


def test_admin_is_safe_to_share_between_threads(job_server: ServerProcess) -> None:
    with Admin(job_server.address) as admin:
        versions: list[str] = []
        assert run_threads(8, lambda n: versions.extend(admin.version() for _ in range(50))) == []
    assert len(set(versions)) == 1
    assert len(versions) == 400


def test_epoch_job_with_a_fraction_of_a_second_never_runs_early(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    ran: list[tuple[bytes, float]] = []

    def record(job: RawJob) -> bytes:
        ran.append((job.workload, time.time()))
        return b""

    with RawWorker(job_server.port, {b"epoch": record}):
        when = math.floor(time.time()) + 2.7  # truncated, it would be due 0.7 s early
        handle = client.submit_background("epoch", b"scheduled", when=when)
        assert client.get_status(handle).known
        time.sleep(max(0.0, when - 0.4 - time.time()))
        client.do("epoch", b"probe")  # wakes a sleeping worker (gearmand has no timer for epoch jobs)
        assert [workload for workload, _ in ran] == [b"probe"]
        time.sleep(max(0.0, math.ceil(when) - time.time()) + 0.2)
        client.do("epoch", b"probe")
        deadline = time.monotonic() + 30
        while len(ran) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert sorted(workload for workload, _ in ran) == [b"probe", b"probe", b"scheduled"]
    assert next(at for workload, at in ran if workload == b"scheduled") >= when


def test_workloads_other_than_bytes_or_str_raise_type_error(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    for workload, name in ((5, "int"), ([104, 105], "list"), ({"a": 1}, "dict")):
        with pytest.raises(TypeError, match=name):
            client.do("echo", workload)
    assert client.client.pending_count == 0
    with RawWorker(job_server.port, {b"echo": echo}):
        for accepted in (b"hi", bytearray(b"hi"), memoryview(b"hi"), "hi"):
            assert client.do("echo", accepted) == b"hi"


def test_json_codec_sends_objects_and_decodes_results(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address, codec=JSONCodec())
    data: list[object] = []

    def chatty(job: RawJob) -> bytes:
        job.data(b'{"part":1}')
        return b'{"sum":' + str(sum(__import__("json").loads(job.workload))).encode() + b"}"

    with RawWorker(job_server.port, {b"echo": echo, b"sum": chatty}):
        for value in (5, [104, 105], {"a": [1, None]}, "text"):
            decoded: object = client.do("echo", value)
            assert decoded == value
        total: object = client.do("sum", [1, 2, 3], on_data=data.append)
        assert total == {"sum": 6}
    assert data == [{"part": 1}]


def test_background_job_fires_only_on_created(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    seen: list[str] = []
    handle = client.submit_background(
        "nobody-works-this",
        b"x",
        on_created=lambda handle: seen.append("created"),
        on_complete=lambda result: seen.append("complete"),
    )
    assert seen == ["created"]
    job = client.submit("nobody-works-this", b"y", background=True)
    client.wait([job], 10)
    assert job.events == [CreatedEvent(job.handle)]  # type: ignore[arg-type]
    assert client.get_status(handle).known


def is_closed(front: Front) -> bool:
    """``closed`` read afresh (the calls between two reads change it behind the type checker's back)."""
    return front.client.closed


def test_closed_client_raises_client_closed_and_connect_opens_it_again(
    job_server: ServerProcess, front: FrontFactory
) -> None:
    client = front(job_server.address)
    with RawWorker(job_server.port, {b"rev": reverse}):
        assert client.do("rev", b"ab") == b"ba"
        client._either("close")
        assert is_closed(client)
        with pytest.raises(ClientClosed, match="closed"):
            client.do("rev", b"ab")
        with pytest.raises(RuntimeError, match=r"connect\(\)"):
            client.echo(b"x")
        client.connect()
        assert not is_closed(client)
        assert client.do("rev", b"cd") == b"dc"
        client._either("close")
        client.connect()
        client.connect()  # connecting an open client is harmless
        assert client.do("rev", b"ef") == b"fe"


MADE_AT_IMPORT = AsyncClient("127.0.0.1:1")
"""Made outside any running loop, as a module-level client is (the fixture's server replaces the address)."""


def test_async_client_made_outside_a_loop_works_in_the_loop_that_uses_it(gearworks_server: ServerProcess) -> None:
    client = MADE_AT_IMPORT
    client.set_servers(gearworks_server.address)

    async def use() -> bytes:
        return await client.echo(b"first loop")

    async def from_another_loop() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            await client.echo(b"x")

    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(use()) == b"first loop"
        asyncio.run(from_another_loop())
        first.run_until_complete(client.close())
    finally:
        first.close()

    async def reopened() -> bytes:
        await client.connect()
        try:
            return await client.echo(b"second loop")
        finally:
            await client.close()

    assert asyncio.run(reopened()) == b"second loop"


@pytest.fixture
def deaf_server() -> Iterator[tuple[str, int]]:
    """A TCP listener that accepts connections and never reads from them (a stuck job server)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join(5)
        for sock in accepted:
            sock.close()
        listener.close()


def test_blocking_do_keeps_its_timeout_when_the_server_stops_reading(deaf_server: tuple[str, int]) -> None:
    host, port = deaf_server
    with Client(f"{host}:{port}") as client:
        started = time.monotonic()
        with pytest.raises(JobTimeout):
            client.do("f", b"x" * (32 * 1024 * 1024), timeout=0.5)  # far more than the socket buffers hold
        assert time.monotonic() - started < 5


def test_blocking_submit_waits_past_write_buffer_limit_then_times_out(deaf_server: tuple[str, int]) -> None:
    host, port = deaf_server
    with Client(f"{host}:{port}", write_buffer_limit=1024 * 1024, command_timeout=1.0) as client:
        started = time.monotonic()
        jobs = [client.submit("f", b"x" * (1024 * 1024)) for _ in range(8)]
        # The second submission waited for room; the silent server was dropped after command_timeout.
        assert 0.9 < time.monotonic() - started < 10
        assert any(job.done for job in jobs)


def test_async_burst_is_bounded_by_write_buffer_limit_and_do_keeps_its_timeout(deaf_server: tuple[str, int]) -> None:
    host, port = deaf_server

    async def main() -> None:
        async with AsyncClient(f"{host}:{port}", write_buffer_limit=4 * 1024 * 1024) as client:
            refused: list[BufferError] = []
            for _ in range(10_000):
                try:
                    client.submit("f", b"x" * 4096)
                except BufferError as exc:
                    refused.append(exc)
                    break
                await asyncio.sleep(0)
            assert refused
            assert "write_buffer_limit" in str(refused[0])
            assert sum(connection.buffered for connection in client._connections.values()) < 8 * 1024 * 1024
            started = time.monotonic()
            with pytest.raises(JobTimeout):
                await client.do("f", b"y", timeout=0.5)  # waits for drain(), not past its timeout
            assert time.monotonic() - started < 5

    asyncio.run(asyncio.wait_for(main(), 30))
