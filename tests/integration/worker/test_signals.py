"""SIGTERM/SIGINT drain, with the worker as a real subprocess: jobs in hand finish, nothing more is grabbed, the
process exits 0, and no job is lost or run twice."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gearworks.admin import Admin
from tests.integration.worker.conftest import php_submit_background
from tests.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[3]


def start_worker(server: ServerProcess, kind: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.peers.gearworks_worker", "--servers", server.address, "--kind", kind]
    argv += ["--function", "drain", "--log", str(log), *extra]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def lines(log: Path, what: str) -> list[str]:
    text = log.read_text() if log.exists() else ""
    return [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith(what + " ")]


@pytest.mark.parametrize(
    ("kind", "signum", "concurrency"),
    [
        ("async", signal.SIGTERM, 3),
        ("async", signal.SIGINT, 3),
        ("async", signal.SIGTERM, 1),
        ("blocking", signal.SIGTERM, 3),  # thread pool
        ("blocking", signal.SIGINT, 3),
        ("blocking", signal.SIGTERM, 1),  # the handler runs in the thread the signal interrupts
    ],
)
def test_signal_drains_jobs_in_flight(
    gearmand: ServerProcess, tmp_path: Path, kind: str, signum: int, concurrency: int
) -> None:
    log = tmp_path / "jobs.log"
    php_submit_background(gearmand.port, "drain", 6)
    worker = start_worker(gearmand, kind, log, "--concurrency", str(concurrency), "--sleep", "1")
    try:
        deadline = time.monotonic() + 15
        while len(lines(log, "start")) < concurrency:
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker never took three jobs"
            time.sleep(0.02)
        worker.send_signal(signum)
        out, err = worker.communicate(timeout=20)
        assert worker.returncode == 0, err.decode()
        assert out.decode().strip() == f"handled {concurrency}"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert sorted(lines(log, "done")) == sorted(lines(log, "start"))
    assert len(lines(log, "done")) == concurrency
    with Admin(gearmand.address) as admin:
        left = [(row.total, row.running) for row in admin.status() if row.function == b"drain"]
    assert left == [(6 - concurrency, 0)]

    rest = start_worker(gearmand, kind, log, "--max-jobs", str(6 - concurrency))
    try:
        _, err = rest.communicate(timeout=20)
        assert rest.returncode == 0, err.decode()
    finally:
        if rest.poll() is None:
            rest.kill()
            rest.communicate()
    done = collections.Counter(lines(log, "done"))
    assert len(done) == 6
    assert set(done.values()) == {1}, "a job ran twice"
