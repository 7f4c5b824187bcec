"""Every script in examples/ runs as a subprocess against a real job server — ``gearworks serve`` and, where the
example makes sense there, C gearmand — and prints what it promises. Worker examples are fed by this test and
stopped by ``--max-jobs`` or SIGTERM."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gearworks import Admin, Client
from tests.conftest import ServerFactory, require
from tests.servers import ServerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 60.0

pytestmark = pytest.mark.timeout(120)


def run(name: str, *args: str) -> str:
    """Run an example to completion; its stdout (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{name} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Running:
    """An example started in the background, its stdout read line by line."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30.0) -> None:
        """Block until ``count`` stdout lines have matched ``pattern``."""
        deadline = time.monotonic() + timeout
        while sum(1 for line in self.lines if re.search(pattern, line)) < count:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.name}: no {pattern!r} after {timeout}s; got {self.lines}") from None
            if line is None:
                raise AssertionError(f"{self.name} exited before {pattern!r}: {self.lines}\n{self.stderr()}")
            self.lines.append(line)

    def finish(self, timeout: float = TIMEOUT) -> str:
        """Wait for exit 0; the whole stdout."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        assert self.proc.returncode == 0, f"{self.name} exited {self.proc.returncode}\n{self.stderr()}"
        return "\n".join(self.lines)

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr is not None and self.proc.poll() is not None else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def background() -> Iterator[Callable[..., Running]]:
    """Start examples in the background; every one still running afterwards is killed."""
    started: list[Running] = []

    def start(name: str, *args: str) -> Running:
        started.append(Running(name, *args))
        return started[-1]

    yield start
    for example in started:
        example.close()


@pytest.fixture(params=["gearworks_server_factory", "gearmand_factory"], ids=["gearworks", "gearmand"])
def server_factory(request: pytest.FixtureRequest) -> ServerFactory:
    """Each kind of job server in turn."""
    factory: ServerFactory = request.getfixturevalue(request.param)
    return factory


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory()


def in_order(output: str, *expected: str) -> None:
    """Every expected line occurs in output, in this order."""
    lines = output.splitlines()
    position = 0
    for line in expected:
        assert line in lines[position:], f"{line!r} missing (or out of order) in:\n{output}"
        position = lines.index(line, position) + 1


# ------------------------------------------------------------------------------------------------------- clients


def test_client_foreground_prints_the_result(server: ServerProcess) -> None:
    assert run("client_foreground.py", server.address) == "reverse('hello') = olleh\n"


def test_client_pipeline_gets_every_result(server: ServerProcess) -> None:
    assert re.fullmatch(r"1000 of 1000 results correct, [\d,]+ jobs/s\n", run("client_pipeline.py", server.address))


def test_client_background_jobs_wait_for_a_later_worker(server: ServerProcess) -> None:
    output = run("client_background.py", server.address)
    assert re.search(r"^client: queued ada@example\.org as H:\S+:\d+$", output, flags=re.MULTILINE), output
    in_order(
        output,
        "client: gone; the jobs wait on the server",
        "worker: mailed ada@example.org",
        "worker: mailed grace@example.org",
        "worker: mailed linus@example.org",
        "worker: 3 background jobs done",
    )


def test_client_scheduled_job_runs_at_its_time(server: ServerProcess) -> None:
    # On gearmand too: it wakes no sleeping worker when an epoch job comes due, but the worker polls a sleeping
    # connection every poll_interval seconds (the example sets 1 s).
    started = time.monotonic()
    output = run("client_scheduled.py", server.address, "--delay", "2")
    assert "status now: known=True running=False" in output
    assert "on time=True" in output
    assert time.monotonic() - started >= 1.0  # never before its time (the epoch is whole seconds)


def test_client_unique_coalesces_and_reports_status_by_unique(server: ServerProcess) -> None:
    output = run("client_unique.py", server.address)
    in_order(
        output,
        "status by unique: known=True running=True progress=1/2 clients waiting=3",
        "3 clients got 'report for 2026-Q4'; the worker ran it 1 time(s)",
    )


def test_client_events_stream_in_order(server: ServerProcess) -> None:
    output = run("client_events.py", server.address)
    in_order(
        output,
        "event: CreatedEvent",
        "data: chunk 1",
        "status: 1/3",
        "data: chunk 3",
        "status: 3/3",
        "warning: low disk space",
        "complete: transcoded movie.mkv",
        "callback data: chunk 1",
        "callback status: 3/3",
        "callback result: transcoded song.flac",
    )


def test_client_fanout_adds_up_the_parts(server: ServerProcess) -> None:
    assert run("client_fanout.py", server.address, "--parts", "8") == (
        "8 parts counted: 1000 words (counted here: 1000)\n"
    )


def test_client_priority_runs_high_then_normal_then_low(server: ServerProcess) -> None:
    assert "run order: high-1 high-2 normal-1 low-1 low-2\n" in run("client_priority.py", server.address)


def test_client_errors_names_each_failure(server: ServerProcess) -> None:
    output = run("client_errors.py", server.address)
    assert re.search(r"^JobFailed: job b'H:[^']+' \(b'flaky'\) failed$", output, flags=re.MULTILINE), output
    in_order(
        output,
        "JobException: ValueError: cannot parse b'x'",
        "JobTimeout: job b'slow' timed out",
        "ValueError: SUBMIT_JOB argument 'function' must not contain a NUL byte",
    )
    assert re.search(r"^NoServerAvailable: no job server available: 127\.0\.0\.1:1 ", output, flags=re.MULTILINE)


def test_client_json_sends_and_gets_objects(server: ServerProcess) -> None:
    assert run("client_json.py", server.address) == "result is a dict: {'order': 17, 'items': 2, 'total': 30}\n"


def test_client_retry_succeeds_after_doubling_delays(server: ServerProcess) -> None:
    output = run("client_retry.py", server.address)
    match = re.search(r"^fetched report\.csv after 3 attempts; retries \[1, 2\]; waited at least \[(.+), (.+)\] s$",
                      output, flags=re.MULTILINE)  # fmt: skip
    assert match, output
    first, second = (float(gap) for gap in match.groups())
    assert first >= 0.2  # retry_delay 0.2 s, then doubled
    assert second >= 0.4


def test_stats_counts_each_outcome(gearworks_server: ServerProcess) -> None:
    assert run("stats.py", gearworks_server.address) == (
        "client saw 27 done, 3 failed\n"
        "server counted 30 submitted, 27 completed, 3 ended by an exception, 0 by WORK_FAIL, 1 worker(s) now\n"
        "run time p50 >= 10 ms: True; p99 >= p50: True\n"
    )


# ------------------------------------------------------------------------------------------------------- workers


def wait_for_workers(address: str, function: bytes, count: int = 1) -> None:
    deadline = time.monotonic() + 20
    with Admin(address) as admin:
        while not any(row.function == function and row.workers >= count for row in admin.status()):
            assert time.monotonic() < deadline, f"no worker registered {function!r}"
            time.sleep(0.02)


def test_worker_forever_serves_until_max_jobs(server: ServerProcess, background: Callable[..., Running]) -> None:
    worker = background("worker_forever.py", server.address, "--max-jobs", "3")
    worker.wait_for("^serving reverse, upper$")
    wait_for_workers(server.address, b"upper")
    with Client(server.address) as client:
        assert client.do("reverse", "hello", timeout=10) == b"olleh"
        assert client.do("upper", "hello", timeout=10) == b"HELLO"
        assert client.do("reverse", "abc", timeout=10) == b"cba"
    assert worker.finish().endswith("handled 3 jobs")


def test_worker_async_runs_handlers_concurrently(server: ServerProcess, background: Callable[..., Running]) -> None:
    worker = background("worker_async.py", server.address, "--max-jobs", "11")
    wait_for_workers(server.address, b"fetch")
    statuses: list[tuple[int, int]] = []
    with Client(server.address) as client:
        tasks = client.task_set()
        for n in range(10):
            tasks.add("fetch", f"page {n}", on_status=lambda num, den: statuses.append((num, den)))
        started = time.monotonic()
        tasks.wait(timeout=30)
        elapsed = time.monotonic() - started
        assert client.do("checksum", "abc", timeout=10) == b"0126"
    assert tasks.results() == [f"fetched page {n}".encode() for n in range(10)]
    assert statuses.count((4, 4)) == 10
    assert elapsed < 1.5, f"10 jobs of 0.2 s took {elapsed:.2f}s: not concurrent"
    assert worker.finish().endswith("handled 11 jobs")


def test_worker_pool_caps_concurrency(server: ServerProcess, background: Callable[..., Running]) -> None:
    worker = background("worker_pool.py", server.address, "--concurrency", "3", "--max-jobs", "9")
    wait_for_workers(server.address, b"resize")
    with Client(server.address) as client:
        tasks = client.task_set()
        for n in range(9):
            tasks.add("resize", f"img{n}")
        tasks.wait(timeout=30)
    assert tasks.results() == [f"resized img{n}".encode() for n in range(9)]
    assert worker.finish().endswith("handled 9 jobs, at most 3 at once")


def test_worker_graceful_finishes_jobs_in_hand_on_sigterm(
    server: ServerProcess, background: Callable[..., Running]
) -> None:
    worker = background("worker_graceful.py", server.address)
    wait_for_workers(server.address, b"backup")
    with Client(server.address) as client:
        tasks = client.task_set()
        for host in ("db1", "db2"):
            tasks.add("backup", host)
        waiting = threading.Thread(target=tasks.wait, kwargs={"timeout": 30})
        waiting.start()
        worker.wait_for("^started db", count=2)
        worker.proc.send_signal(signal.SIGTERM)
        output = worker.finish()
        waiting.join()
    results = tasks.results()
    assert sorted(result for result in results if isinstance(result, bytes)) == [b"backed up db1", b"backed up db2"]
    assert output.count("finished db") == 2
    assert output.endswith("drained: 2 jobs finished, exiting 0")


def test_worker_exceptions_reach_the_client_and_the_worker_goes_on(server: ServerProcess) -> None:
    assert run("worker_exceptions.py", server.address).splitlines() == [
        "parse(21) = 42",
        "parse(twenty) raised on the worker: ValueError: not a number: twenty",
        "lookup(unknown) failed",
        "parse(4) = 8",
    ]


def test_worker_batch_drains_the_queue_and_exits(server: ServerProcess) -> None:
    output = run("worker_batch.py", server.address, "--jobs", "20")
    assert re.search(r"^drained: 20 jobs in [\d.]+s, 20 distinct photos$", output, flags=re.MULTILINE), output
    in_order(output, "queued 20 jobs", "grab_one on the empty queue: None")


# ---------------------------------------------------------------------------------------------------- operations


def test_admin_shows_queues_and_workers(server: ServerProcess) -> None:
    output = run("admin.py", server.address)
    assert re.search(r"^version: (OK )?1\.1\.20", output, flags=re.MULTILINE), output
    assert f"pid: {server.pid}" in output
    in_order(
        output,
        "status: reverse queued=0 running=0 workers=1",
        "status: thumbnail queued=3 running=0 workers=0",
        "worker: admin-example serves reverse",
        "maxqueue thumbnail 100: OK",
        "thumbnail jobs left: 0",
    )


def test_monitoring_polls_until_the_backlog_drains(server: ServerProcess) -> None:
    output = run("monitoring.py", server.address, "--interval", "0.1")
    assert re.search(r"encode queued=\d+ running=[12] workers=1$", output, flags=re.MULTILINE), output
    assert output.splitlines()[-1].endswith("encode drained")


def test_reconnect_survives_a_server_restart(server: ServerProcess, background: Callable[..., Running]) -> None:
    example = background("reconnect.py", server.address, "--jobs", "10", "--pause", "0.1")
    example.wait_for("^job 3: 3 boj$")
    server.restart()  # stopped and started again on the same port
    output = example.finish()
    assert output.endswith("10 of 10 jobs done")
    assert "job 10: 01 boj" in output


def test_multi_server_spreads_jobs_over_every_server(server_factory: ServerFactory) -> None:
    first, second = server_factory(), server_factory()
    output = run("multi_server.py", f"{first.address},{second.address}")
    counts = dict(re.findall(r"^(127\.0\.0\.1:\d+): (\d+) jobs$", output, flags=re.MULTILINE))
    assert set(counts) == {first.address, second.address}, output
    assert all(int(count) > 0 for count in counts.values())
    assert sum(int(count) for count in counts.values()) == 20
    assert "unique key user-42 went to 1 server(s)" in output
    assert "all results correct: True" in output


def test_unix_socket_carries_jobs_and_admin(gearworks_server_factory: ServerFactory, tmp_path: Path) -> None:
    # gearworks only: gearmand 1.1.20 has no Unix socket listener.
    path = tmp_path / "gearman.sock"
    gearworks_server_factory("--unix-socket", str(path))
    output = run("unix_socket.py", str(path))
    assert f"reverse over {path}: olleh" in output
    assert re.search(rf"admin over {re.escape(str(path))}: 1\.1\.20\+gearworks\.", output), output


def test_mixed_farm_c_worker_serves_a_gearworks_client(server: ServerProcess) -> None:
    require("gearman", "gearman-tools")
    require("rev", "util-linux")
    assert run("mixed_farm.py", server.address).splitlines() == [
        "C worker reversed 'gearman': 'namraeg'",
        "C worker reversed 'python': 'nohtyp'",
        "C worker reversed 'farm': 'mraf'",
    ]


def test_every_example_is_tested_and_listed() -> None:
    tested = set(re.findall(r'"(\w+\.py)"', Path(__file__).read_text()))
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts <= tested, f"examples without a test: {sorted(scripts - tested)}"
    table = (EXAMPLES / "README.md").read_text()
    assert all(f"[{name}]({name})" in table for name in scripts), "examples/README.md misses a script"
