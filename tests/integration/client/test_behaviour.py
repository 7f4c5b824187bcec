"""Both clients against the real C gearmand: every behaviour of the issue, one suite, parametrized by front-end."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from gearworks.client import CompleteEvent, CreatedEvent, DataEvent, StatusEvent, WarningEvent
from gearworks.connection import ServerAddress
from gearworks.errors import ConnectionLost, JobException, JobFailed, JobTimeout, ServerError
from tests.integration.client.conftest import FrontFactory
from tests.peers.raw_worker import RawJob, RawWorker
from tests.servers import ServerProcess


def reverse(job: RawJob) -> bytes:
    return job.workload[::-1]


def echo(job: RawJob) -> bytes:
    return job.workload


def chatty(job: RawJob) -> bytes:
    job.data(b"part\0one")
    job.warning(b"careful")
    job.status(1, 2)
    return b"done"


def test_do_returns_the_result_and_reports_every_event(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    seen: list[object] = []
    with RawWorker(job_server.port, {b"reverse": reverse, b"chatty": chatty}):
        assert client.do("reverse", "hello") == b"olleh"
        assert client.do(b"reverse", b"") == b""
        job = client.submit(
            "chatty",
            b"x",
            on_created=lambda handle: seen.append(("created", handle)),
            on_data=lambda data: seen.append(("data", data)),
            on_warning=lambda data: seen.append(("warning", data)),
            on_status=lambda n, d: seen.append(("status", n, d)),
            on_complete=lambda result: seen.append(("complete", result)),
        )
        client.wait([job], 30)
    assert job.result() == b"done"
    assert job.handle is not None
    assert [type(event) for event in job.events] == [
        CreatedEvent,
        DataEvent,
        WarningEvent,
        StatusEvent,
        CompleteEvent,
    ]
    assert seen == [
        ("created", job.handle),
        ("data", b"part\0one"),
        ("warning", b"careful"),
        ("status", 1, 2),
        ("complete", b"done"),
    ]
    assert (client.client.pending_count, client.client.active_count) == (0, 0)


def test_failed_job_raises_and_retry_count_resubmits(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    attempts: list[bytes] = []

    def flaky(job: RawJob) -> bytes:
        attempts.append(job.workload)
        if job.workload == b"always" or attempts.count(job.workload) < 2:
            job.fail()
        return b"second time"

    retries: list[int] = []
    with RawWorker(job_server.port, {b"flaky": flaky}):
        with pytest.raises(JobFailed, match="flaky") as caught:
            client.do("flaky", "always", retry_count=2, on_retry=retries.append)
        assert caught.value.function == b"flaky"
        assert retries == [1, 2]
        assert client.do("flaky", "once", retry_count=1, on_retry=retries.append) == b"second time"
        with pytest.raises(JobFailed):
            client.do("flaky", "no retries")
    assert retries == [1, 2, 1]
    assert attempts == [b"always"] * 3 + [b"once"] * 2 + [b"no retries"]


def test_worker_exception_reaches_clients_that_asked_for_exceptions(
    job_server: ServerProcess, front: FrontFactory
) -> None:
    def boom(job: RawJob) -> None:
        job.exception(b"ZeroDivisionError\0details")

    plain = front(job_server.address)
    with RawWorker(job_server.port, {b"boom": boom}):
        with pytest.raises(JobFailed) as failed:
            plain.do("boom")  # the server turns the exception into WORK_FAIL for this client (PROTOCOL.md §3.7)
        assert not isinstance(failed.value, JobException)
        plain.option("exceptions")
        with pytest.raises(JobException) as raised:
            plain.do("boom")
        assert raised.value.data == b"ZeroDivisionError\0details"
        from_start = front(job_server.address, exceptions=True)
        exceptions: list[bytes] = []
        with pytest.raises(JobException):
            from_start.do("boom", on_exception=exceptions.append)
        assert exceptions == [b"ZeroDivisionError\0details"]
    with pytest.raises(ServerError, match="UNKNOWN_OPTION"):
        plain.option("no-such-option")


def test_priorities_order_queued_jobs(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    order = [("low", b"L1"), ("normal", b"N1"), ("high", b"H1"), ("low", b"L2"), ("normal", b"N2"), ("high", b"H2")]
    jobs = [client.submit("prio", name, priority=priority) for priority, name in order]
    background = [client.submit_background("prio", name, priority=priority) for priority, name in order]
    assert len(set(background)) == 6
    assert client.echo(b"sync") == b"sync"  # every submission above has been created
    with RawWorker(job_server.port, {b"prio": echo}) as worker:
        client.wait(jobs, 30)
        deadline = time.monotonic() + 30
        while len(worker.seen) < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [job.result() for job in jobs] == [name for _, name in order]
    assert [workload for _, _, workload in worker.seen] == [
        b"H1",
        b"H2",
        b"H1",
        b"H2",
        b"N1",
        b"N2",
        b"N1",
        b"N2",
        b"L1",
        b"L2",
        b"L1",
        b"L2",
    ]


def test_unique_key_coalesces_foreground_jobs(job_server: ServerProcess, front: FrontFactory) -> None:
    one, two = front(job_server.address), front(job_server.address)
    first = one.submit("coalesce", b"FIRST", unique=b"same-key")
    again = one.submit("coalesce", b"ignored", unique=b"same-key")
    assert one.echo(b"") == b""  # the first submission is created before the other client's
    other_client = two.submit("coalesce", b"SECOND", unique=b"same-key")
    different = two.submit("coalesce", b"OTHER", unique=b"other-key")
    assert two.echo(b"") == b""
    with RawWorker(job_server.port, {b"coalesce": echo}) as worker:
        one.wait([first, again], 30)
        two.wait([other_client, different], 30)
    assert first.handle == again.handle == other_client.handle != different.handle
    assert first.result() == again.result() == other_client.result() == b"FIRST"
    assert different.result() == b"OTHER"
    assert sorted(workload for _, _, workload in worker.seen) == [b"FIRST", b"OTHER"]


def test_background_job_status_by_handle_and_unique(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    handle = client.submit_background("later", b"payload", unique=b"u-1")
    status = client.get_status(handle)
    assert (status.handle, status.known, status.running) == (handle, True, False)
    assert client.get_status(bytes(handle)).known  # a plain handle: every server is asked
    by_unique = client.get_status_unique(b"u-1")
    assert (by_unique.unique, by_unique.known, by_unique.client_count) == (b"u-1", True, 0)

    release = threading.Event()

    def slow(job: RawJob) -> bytes:
        job.status(50, 100)
        release.wait(30)
        return b"r"

    with RawWorker(job_server.port, {b"later": slow}):
        deadline = time.monotonic() + 30
        while (status := client.get_status(handle)).numerator != 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (status.known, status.running, status.numerator, status.denominator) == (True, True, 50, 100)
        release.set()
        while client.get_status(handle).known and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not client.get_status(handle).known
    assert not client.get_status_unique(b"u-1").known


def test_background_jobs_get_distinct_default_uniques(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    handles = {client.submit_background("bg", b"same payload") for _ in range(3)}
    assert len(handles) == 3  # not squashed into one job
    job = client.submit("bg", b"x", background=True)
    client.wait([job], 30)
    assert job.result() == job.handle


def test_epoch_job_does_not_run_before_its_time(gearmand: ServerProcess, front: FrontFactory) -> None:
    client = front(gearmand.address)
    ran: list[tuple[bytes, float]] = []

    def record(job: RawJob) -> bytes:
        ran.append((job.workload, time.time()))
        return b""

    with RawWorker(gearmand.port, {b"epoch": record}):
        when = int(time.time()) + 2
        handle = client.submit_background("epoch", b"scheduled", when=when)
        time.sleep(0.5)
        assert ran == []
        assert client.get_status(handle).known
        time.sleep(max(0.0, when - time.time()) + 0.3)
        # gearmand has no timer for epoch jobs (PROTOCOL.md §3.5): a later submission wakes the sleeping worker.
        client.do("epoch", b"now")
        deadline = time.monotonic() + 30
        while len(ran) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [workload for workload, _ in ran] == [b"scheduled", b"now"]
    assert ran[0][1] >= when


def test_four_mib_payload_with_nul_bytes_round_trips(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    payload = bytes(range(256)) * (4 * 4096) + b"\0\0end"
    with RawWorker(job_server.port, {b"echo": echo}):
        assert client.do("echo", payload) == payload
        assert client.echo(payload) == payload


def test_payload_over_the_limit_is_refused_before_sending(gearmand: ServerProcess, front: FrontFactory) -> None:
    client = front(gearmand.address, max_packet_size=64 * 1024)
    with pytest.raises(ValueError, match="packet limit"):
        client.submit("echo", b"x" * (64 * 1024))
    with pytest.raises(ValueError, match="packet limit"):
        client.do("echo", b"x" * (64 * 1024))
    assert client.client.pending_count == 0
    with RawWorker(gearmand.port, {b"echo": echo}):
        assert client.do("echo", b"x" * (60 * 1024)) == b"x" * (60 * 1024)


def test_close_fails_pending_jobs_and_nothing_hangs(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    jobs = [client.submit("nobody-works-this", str(i)) for i in range(50)]
    background = client.submit("nobody-works-this", b"bg", background=True)
    assert client.echo(b"") == b""
    assert client.client.active_count == 50
    client.close()
    for job in [*jobs, background]:
        assert job.done
    with pytest.raises(ConnectionLost, match="closed"):
        jobs[0].result()
    assert background.result() == background.handle  # created before the close: not failed


def test_job_timeout_and_task_set_timeout(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    started = time.monotonic()
    with pytest.raises(JobTimeout):
        client.do("nobody-works-this", b"", timeout=0.3)
    assert 0.25 < time.monotonic() - started < 5
    jobs = client.task_set([("nobody-works-this", b"a", {}), ("nobody-works-this", b"b", {})], timeout=0.3)
    assert all(isinstance(job.error, JobTimeout) for job in jobs)


def test_task_set_runs_many_jobs_with_per_task_callbacks(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    completed: dict[int, bytes] = {}
    tasks = [
        ("reverse", str(i).encode(), {"on_complete": lambda result, i=i: completed.__setitem__(i, result)})
        for i in range(500)
    ]
    with RawWorker(job_server.port, {b"reverse": reverse}):
        jobs = client.task_set(tasks, timeout=60)
    assert [job.result() for job in jobs] == [str(i).encode()[::-1] for i in range(500)]
    assert completed == {i: str(i).encode()[::-1] for i in range(500)}


def test_many_pipelined_background_submissions(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address)
    jobs = [client.submit("piped", str(i), background=True) for i in range(3000)]
    client.wait(jobs, 60)
    assert len({job.result() for job in jobs}) == 3000
    assert client.client.pending_count == 0


def test_reconnect_after_server_restart_resends_options(job_server: ServerProcess, front: FrontFactory) -> None:
    client = front(job_server.address, exceptions=True)

    def boom(job: RawJob) -> None:
        job.exception(b"bad")

    with RawWorker(job_server.port, {b"boom": boom}), pytest.raises(JobException):
        client.do("boom")
    job_server.restart()
    with RawWorker(job_server.port, {b"boom": boom, b"echo": echo}):
        assert client.do("echo", b"back") == b"back"
        with pytest.raises(JobException):  # OPTION_REQ exceptions was sent again on the new connection
            client.do("boom")


def test_failover_between_two_servers_when_one_is_killed(
    gearmand_factory: Callable[..., ServerProcess], front: FrontFactory
) -> None:
    first, second = gearmand_factory(), gearmand_factory()
    client = front([first.address, second.address], backoff_initial=5.0)
    with RawWorker(first.port, {b"echo": echo}), RawWorker(second.port, {b"echo": echo}):
        keys = [f"key-{i}".encode() for i in range(20)]
        handles = [client.submit_background("echo", b"x", unique=key) for key in keys]
        servers = {handle.server for handle in handles}
        assert len(servers) == 2  # unique keys spread over both
        again = [client.submit_background("echo", b"x", unique=key) for key in keys]
        assert [h.server for h in again] == [h.server for h in handles]  # and each key sticks to its server
        assert {client.do("echo", str(i), unique=str(i)) for i in range(10)} == {str(i).encode() for i in range(10)}
        first.kill()
        results = [client.do("echo", str(i), unique=str(i), retry_count=1) for i in range(10)]
        assert results == [str(i).encode() for i in range(10)]
        moved = [client.submit_background("echo", b"x", unique=key) for key in keys]
        assert {h.server for h in moved} == {ServerAddress.parse(second.address)}


def test_in_flight_job_moves_to_the_other_server_with_a_retry(
    gearmand_factory: Callable[..., ServerProcess], front: FrontFactory
) -> None:
    first, second = gearmand_factory(), gearmand_factory()
    client = front([first.address, second.address], backoff_initial=5.0)
    retries: list[int] = []
    jobs = [client.submit("slowecho", str(i), retry_count=1, on_retry=retries.append) for i in range(6)]
    assert client.echo(b"") == b""
    assert client.echo(b"") == b""
    first.kill()
    with RawWorker(second.port, {b"slowecho": echo}):
        client.wait(jobs, 60)
    assert [job.result() for job in jobs] == [str(i).encode() for i in range(6)]
    assert retries  # the jobs that were on the killed server were submitted again


def test_prefix_and_server_list_replaced_at_run_time(
    gearmand_factory: Callable[..., ServerProcess], front: FrontFactory
) -> None:
    first, second = gearmand_factory(), gearmand_factory()
    client = front(first.address, prefix="app")
    with RawWorker(first.port, {b"app\techo": echo}), RawWorker(second.port, {b"app\techo": echo}):
        assert client.submit_background("echo", b"").server.port == first.port  # type: ignore[union-attr]
        assert client.do("echo", b"ns") == b"ns"
        client.set_servers([second.address])
        assert client.submit_background("echo", b"").server.port == second.port  # type: ignore[union-attr]
        assert client.do("echo", b"moved") == b"moved"


def test_gearman_cli_worker_serves_our_client(gearmand: ServerProcess, front: FrontFactory) -> None:
    import subprocess

    from tests.conftest import require

    require("gearman", "gearman-tools")
    worker = subprocess.Popen(["gearman", "-h", "127.0.0.1", "-p", str(gearmand.port), "-w", "-f", "rev", "--", "rev"])
    try:
        client = front(gearmand.address)
        assert client.do("rev", b"hello\n", timeout=30) == b"olleh\n"
    finally:
        worker.kill()
        worker.wait(10)


def test_unix_socket_server(gearmand: ServerProcess, front: FrontFactory, tmp_path: object) -> None:
    import subprocess

    from tests.conftest import require

    require("socat", "socat")
    path = os.path.join(str(tmp_path), "gearman.sock")
    relay = subprocess.Popen(["socat", f"UNIX-LISTEN:{path},fork", f"TCP:127.0.0.1:{gearmand.port}"])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        client = front(path)
        with RawWorker(gearmand.port, {b"echo": echo}):
            assert client.do("echo", b"over a unix socket") == b"over a unix socket"
    finally:
        relay.kill()
        relay.wait(10)
