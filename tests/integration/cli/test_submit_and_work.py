"""``gearworks submit`` and ``gearworks work`` as subprocesses, with each other and with the ``gearman`` CLI, against
C gearmand and gearworks' own server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearworks.admin import Admin
from tests.servers import ServerProcess, gearworks_process, running

GEARWORKS = [sys.executable, "-m", "gearworks.cli.main"]


def submit(server: ServerProcess, *argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*GEARWORKS, "submit", *argv, "-p", str(server.port)], input=stdin, capture_output=True, timeout=30, check=False
    )


def wait_for_workers(server: ServerProcess, function: bytes, count: int = 1) -> None:
    deadline = time.monotonic() + 15
    with Admin(f"127.0.0.1:{server.port}") as admin:
        while not any(row.function == function and row.workers >= count for row in admin.status()):
            assert time.monotonic() < deadline, f"no worker registered {function!r}"
            time.sleep(0.05)


@pytest.fixture
def command_worker(server: ServerProcess) -> Iterator[subprocess.Popen[bytes]]:
    """``gearworks work -f rev -f fail -- sh -c ...``: reverses its input; `fail` exits 3 with a warning."""
    script = 'if [ "$(cat)" = "boom" ]; then echo "it broke" >&2; exit 3; fi; printf done'
    worker = subprocess.Popen(
        [*GEARWORKS, "work", "-f", "rev", "--concurrency", "4", "-p", str(server.port), "--", "rev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    failing = subprocess.Popen(
        [*GEARWORKS, "work", "-f", "sh", "-p", str(server.port), "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_workers(server, b"rev")
        wait_for_workers(server, b"sh")
        yield worker
    finally:
        for process in (worker, failing):
            process.terminate()
            process.communicate(timeout=30)


def test_foreground_result_goes_to_stdout(server: ServerProcess, command_worker: subprocess.Popen[bytes]) -> None:
    result = submit(server, "-f", "rev", "hello")
    assert (result.returncode, result.stdout) == (0, b"olleh")


def test_workload_from_stdin_and_each_line_in_order(
    server: ServerProcess, command_worker: subprocess.Popen[bytes]
) -> None:
    assert submit(server, "-f", "rev", stdin=b"from stdin").stdout == b"nidts morf"
    lines = b"".join(b"line %d\n" % i for i in range(50))
    result = submit(server, "-f", "rev", "--each-line", stdin=lines)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [line[::-1] for line in lines.splitlines()]


def test_failing_command_fails_the_job_with_its_stderr_as_warning(
    server: ServerProcess, command_worker: subprocess.Popen[bytes]
) -> None:
    result = submit(server, "-f", "sh", "boom")
    assert result.returncode == 1
    assert b"it broke" in result.stderr  # the warning, relayed to the submitter's stderr
    assert b"failed" in result.stderr
    assert b"Traceback" not in result.stderr
    assert submit(server, "-f", "sh", "fine").stdout == b"done"


def test_background_prints_the_handle_and_the_job_runs(server: ServerProcess) -> None:
    result = submit(server, "-f", "later", "-b", "x", "-u", "k1", "--low")
    assert result.returncode == 0
    handle = result.stdout.strip()
    assert handle.startswith(b"H:")
    with Admin(f"127.0.0.1:{server.port}") as admin:
        assert [job.handle for job in admin.show_jobs()] == [handle]
        assert list(admin.show_unique_jobs()) == [b"k1"]
        assert [(r.function, r.low) for r in admin.prioritystatus()] == [(b"later", 1)]


def test_epoch_job_waits_for_its_time() -> None:
    # Ours only: gearmand does not NOOP a sleeping worker when an epoch job comes due (PROTOCOL.md §3.5), so an
    # idle worker there never hears of it.
    with running(gearworks_process()) as server:
        _run_epoch_job(server)


def _run_epoch_job(server: ServerProcess) -> None:
    at = int(time.time()) + 2  # the protocol carries whole seconds
    assert submit(server, "-f", "ep", "--at", str(at), "x").returncode == 0
    worker = subprocess.run(
        [*GEARWORKS, "work", "-f", "ep", "-c", "1", "-p", str(server.port), "--", "cat"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0
    assert time.time() >= at


def test_gearworks_worker_serves_the_gearman_cli(
    server: ServerProcess, command_worker: subprocess.Popen[bytes]
) -> None:
    if shutil.which("gearman") is None:
        pytest.skip("gearman not installed (Debian package gearman-tools)")
    result = subprocess.run(
        ["gearman", "-p", str(server.port), "-f", "rev", "via cli"], capture_output=True, timeout=30, check=False
    )
    assert result.stdout == b"ilc aiv"


def test_gearworks_submit_reaches_a_gearman_cli_worker(server: ServerProcess) -> None:
    if shutil.which("gearman") is None:
        pytest.skip("gearman not installed (Debian package gearman-tools)")
    worker = subprocess.Popen(["gearman", "-p", str(server.port), "-w", "-f", "up", "--", "tr", "a-z", "A-Z"])
    try:
        wait_for_workers(server, b"up")
        assert submit(server, "-f", "up", "shout").stdout == b"SHOUT"
    finally:
        worker.kill()
        worker.wait()


def test_job_timeout_exits_1_with_one_line(server: ServerProcess) -> None:
    result = submit(server, "-f", "nobody", "x", "--timeout", "0.3")
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1
    assert "timed out" in result.stderr.decode()


def test_work_needs_a_command_or_a_module() -> None:
    result = subprocess.run([*GEARWORKS, "work", "-f", "x"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "-- COMMAND" in result.stderr


def test_module_worker_runs_a_python_worker_object(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "shouty.py").write_text(
        "from gearworks import Worker\n"
        "def make(servers):\n"
        "    worker = Worker(servers)\n"
        "    worker.register('shout', lambda job: job.workload.upper() + b'!')\n"
        "    return worker\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    worker = subprocess.Popen(
        [*GEARWORKS, "work", "--module", "shouty:make", "-c", "1", "-p", str(server.port)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_workers(server, b"shout")
        assert submit(server, "-f", "shout", "hey").stdout == b"HEY!"
        assert worker.wait(30) == 0  # -c 1: exits after one job
    finally:
        worker.kill()
        worker.communicate()
