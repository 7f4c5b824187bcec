"""Both admin clients against the real C gearmand (and the Perl Gearman::Server for ``jobs``/``clients``)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gearworks.admin import Admin, AsyncAdmin, DeadLetter, FunctionStatus, PriorityStatus
from gearworks.errors import ConnectionLost, ServerError
from gearworks.protocol import Decoder, Packet, PacketType, encode
from tests.conftest import ServerFactory, require
from tests.integration.server_wire import Wire, abandon
from tests.servers import ServerProcess, perl_gearmand_process, running


class SyncedAsyncAdmin:
    """AsyncAdmin driven from test code through one private event loop, so one suite covers both front-ends."""

    def __init__(self, server: str, **settings: Any) -> None:
        self._runner = asyncio.Runner()
        self._admin = self._runner.run(self._make(server, **settings))

    @staticmethod
    async def _make(server: str, **settings: Any) -> AsyncAdmin:
        return AsyncAdmin(server, **settings)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._admin, name)
        return lambda *args, **kwargs: self._runner.run(method(*args, **kwargs))

    def close(self) -> None:
        self._runner.run(self._admin.close())
        self._runner.close()


AdminFactory = Callable[..., Any]


@pytest.fixture(params=["blocking", "asyncio"])
def admin_factory(request: pytest.FixtureRequest) -> Iterator[AdminFactory]:
    made: list[Any] = []

    def factory(server: str, **settings: Any) -> Any:
        admin = Admin(server, **settings) if request.param == "blocking" else SyncedAsyncAdmin(server, **settings)
        made.append(admin)
        return admin

    yield factory
    for admin in made:
        admin.close()


def submit_bg(port: int, function: bytes, unique: bytes = b"", workload: bytes = b"x") -> bytes:
    """Queue one background job with a raw socket; returns its handle."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(encode(PacketType.SUBMIT_JOB_BG, (function, unique, workload)))
        decoder = Decoder()
        while True:
            for packet in decoder.feed(sock.recv(4096)):
                assert isinstance(packet, Packet)
                assert packet.type is PacketType.JOB_CREATED
                return packet.args[0]


def test_status_counts_queued_jobs(gearmand: ServerProcess, admin_factory: AdminFactory) -> None:
    submit_bg(gearmand.port, b"adm1")
    submit_bg(gearmand.port, b"adm1")
    admin = admin_factory(gearmand.address)
    rows = admin.status()
    assert FunctionStatus(b"adm1", 2, 0, 0) in rows
    assert b"adm1\t2\t0\t0\n" in rows.raw
    assert rows.raw.endswith(b".\n")
    assert PriorityStatus(b"adm1", 0, 2, 0, 0) in admin.prioritystatus()


def test_show_jobs_and_unique(gearmand: ServerProcess, admin_factory: AdminFactory) -> None:
    handle = submit_bg(gearmand.port, b"adm2", b"key-1")
    admin = admin_factory(gearmand.address)
    jobs = admin.show_jobs()
    assert [(job.handle, job.retries, job.ignored, job.persisted) for job in jobs] == [(handle, 0, False, True)]
    assert admin.show_unique_jobs() == [b"key-1"]
    admin.cancel_job(handle)
    assert admin.show_jobs()[0].ignored
    with pytest.raises(ServerError) as caught:
        admin.cancel_job(b"H:nohost:999999")
    assert caught.value.code == "UNKNOWN_JOB"


def test_workers_lists_client_id_and_functions(gearmand: ServerProcess, admin_factory: AdminFactory) -> None:
    with socket.create_connection(("127.0.0.1", gearmand.port), timeout=5) as sock:
        sock.sendall(
            encode(PacketType.SET_CLIENT_ID, (b"admin-test",))
            + encode(PacketType.CAN_DO, (b"wf1",))
            + encode(PacketType.CAN_DO, (b"wf2",))
            + encode(PacketType.ECHO_REQ, (b"sync",))
        )
        sock.recv(100)  # ECHO_RES: the registrations are in
        admin = admin_factory(gearmand.address)
        workers = admin.workers()
        mine = [worker for worker in workers if worker.client_id == b"admin-test"]
        assert len(mine) == 1
        assert mine[0].functions == (b"wf2", b"wf1")
        assert mine[0].address == "127.0.0.1"
        assert any(worker.client_id is None for worker in workers)  # the admin connection itself
        assert FunctionStatus(b"wf1", 0, 0, 1) in admin.status()


def test_scalar_commands(gearmand: ServerProcess, admin_factory: AdminFactory) -> None:
    admin = admin_factory(gearmand.address)
    assert admin.version().startswith("1.1.")
    assert admin.getpid() == gearmand.pid
    assert admin.verbose() == "INFO"
    reply = admin.command("version")
    assert reply.raw.startswith(b"OK 1.1.")


def test_functions_and_maxqueue(gearmand: ServerProcess, admin_factory: AdminFactory) -> None:
    admin = admin_factory(gearmand.address)
    admin.create_function("newfn")  # sent with \r\n, so gearmand keeps the whole name (PROTOCOL.md §4.2)
    assert FunctionStatus(b"newfn", 0, 0, 0) in admin.status()
    admin.maxqueue("newfn", 1)
    admin.maxqueue("newfn", (1, 2, 3))
    admin.maxqueue("newfn")
    admin.drop_function("newfn")
    assert all(row.function != b"newfn" for row in admin.status())
    with pytest.raises(ServerError, match="not found"):
        admin.drop_function("newfn")


def test_maxqueue_of_an_unseen_function_sticks_on_gearworks(
    gearworks_server: ServerProcess, admin_factory: AdminFactory
) -> None:
    # gearmand answers OK and forgets the cap; gearworks creates the function with it (#13 item 14).
    admin = admin_factory(gearworks_server.address)
    admin.maxqueue("capped-new", 1)
    assert FunctionStatus(b"capped-new", 0, 0, 0) in admin.status()
    with Wire(gearworks_server.port) as client:
        assert client.request(PacketType.SUBMIT_JOB_BG, b"capped-new", b"", b"1").type is PacketType.JOB_CREATED
        full = client.request(PacketType.SUBMIT_JOB_BG, b"capped-new", b"", b"2")
    assert full.args == (b"QUEUE_ERROR", b"Job queue is full")
    assert FunctionStatus(b"capped-new", 1, 0, 0) in admin.status()


def test_shutdown_is_refused_by_gearmand(gearmand: ServerProcess, admin_factory: AdminFactory) -> None:
    admin = admin_factory(gearmand.address)
    with pytest.raises(ServerError) as caught:
        admin.shutdown(graceful=True)
    assert caught.value.code == "UNKNOWN_COMMAND"
    assert admin.getpid() == gearmand.pid  # reconnects after the close


def test_perl_server_jobs_and_clients(admin_factory: AdminFactory) -> None:
    require("/usr/bin/gearmand", "gearman-server")
    with running(perl_gearmand_process()) as server:
        submit_bg(server.port, b"pf", b"uq1")
        admin = admin_factory(server.address)
        jobs = admin.jobs()
        assert [(job.function, job.unique, job.worker, job.listeners) for job in jobs] == [(b"pf", b"uq1", None, 0)]
        clients = admin.clients()
        assert all(not client.jobs for client in clients)
        assert admin.version().startswith("v1.")


def test_dead_letters_of_gearworks_server(gearworks_server_factory: ServerFactory, admin_factory: AdminFactory) -> None:
    server = gearworks_server_factory("-j", "1", "--job-handle-prefix", "dl")
    # The second function is prefixed as a client with prefix="app" sends it: the tab stays in the name.
    for function, unique in ((b"adm-dead", b"one"), (b"app\tadm-dead", b"two")):
        submit_bg(server.port, function, unique)
        abandon(server.port, function)
    admin = admin_factory(server.address)
    deadline = time.monotonic() + 5  # the server sees the last worker's disconnect a moment after it
    while len(admin.dead_letters()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    rows = admin.dead_letters()
    assert rows == [DeadLetter(b"dl:1", b"adm-dead", b"one", 1), DeadLetter(b"dl:2", b"app\tadm-dead", b"two", 1)]
    assert rows.raw == b"dl:1\tadm-dead\tone\t1\ndl:2\tapp\tadm-dead\ttwo\t1\n.\n"
    with pytest.raises(ServerError) as info:
        admin.requeue_dead("dl:9")
    assert info.value.code == "UNKNOWN_JOB"
    assert admin.requeue_dead(b"dl:2") == 1
    assert FunctionStatus(b"app\tadm-dead", 1, 0, 0) in admin.status()
    assert admin.purge_dead() == 1
    assert admin.dead_letters() == []
    assert admin.requeue_dead() == 0


def test_async_admin_pipelines_concurrent_commands(gearmand: ServerProcess) -> None:
    submit_bg(gearmand.port, b"pipe")

    async def main() -> tuple[object, ...]:
        async with AsyncAdmin(gearmand.address) as admin:
            return tuple(
                await asyncio.gather(
                    admin.version(), admin.status(), admin.getpid(), admin.show_jobs(), admin.verbose()
                )
            )

    version, status, pid, jobs, level = asyncio.run(main())
    assert str(version).startswith("1.1.")
    assert FunctionStatus(b"pipe", 1, 0, 0) in status  # type: ignore[operator]
    assert pid == gearmand.pid
    assert len(jobs) == 1  # type: ignore[arg-type]
    assert level == "INFO"


def test_async_admin_errors_do_not_desynchronise_replies(gearmand: ServerProcess) -> None:
    async def main() -> tuple[BaseException | object, ...]:
        async with AsyncAdmin(gearmand.address) as admin:
            return tuple(
                await asyncio.gather(
                    admin.cancel_job("H:none:1"),
                    admin.getpid(),
                    admin.drop_function("nope"),
                    admin.version(),
                    return_exceptions=True,
                )
            )

    cancel, pid, drop, version = asyncio.run(main())
    assert isinstance(cancel, ServerError)
    assert pid == gearmand.pid
    assert isinstance(drop, ServerError)
    assert str(version).startswith("1.1.")


def test_a_silent_server_times_out_with_connection_lost(admin_factory: AdminFactory) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        admin = admin_factory(f"127.0.0.1:{port}", command_timeout=0.2)
        with pytest.raises(ConnectionLost, match="did not answer"):
            admin.status()
        with pytest.raises(ConnectionLost, match="did not answer"):
            admin.version()  # a fresh connection: the first command's reply could never be mistaken for this one


def test_stats_of_gearworks_server_and_gearmands_refusal(
    gearworks_server: ServerProcess, gearmand: ServerProcess, admin_factory: AdminFactory
) -> None:
    submit_bg(gearworks_server.port, b"st", workload=b"12345")
    submit_bg(gearworks_server.port, b"app\tst")  # a client prefix's tab stays in the name
    admin = admin_factory(gearworks_server.address)
    rows = {row.function: row for row in admin.stats()}
    assert set(rows) == {b"st", b"app\tst"}
    row = rows[b"st"]
    assert (row.queued, row.running, row.workers, row.submitted, row.bytes_in) == (1, 0, 0, 1, 5)
    assert row.submitted_background == (0, 1, 0)
    assert (row.wait_p99, row.run_p99) == (None, None)
    assert admin.stats("app\tst") == [rows[b"app\tst"]]
    assert admin.stats("nosuch") == []
    with pytest.raises(ServerError) as info:
        admin_factory(gearmand.address).stats()
    assert info.value.code == "UNKNOWN_COMMAND"
