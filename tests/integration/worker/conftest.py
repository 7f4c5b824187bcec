"""Fixtures for worker tests: either front-end running in a background thread, and foreign clients to feed it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gearworks.worker import AsyncWorker, Worker
from tests.conftest import require

PEERS = Path(__file__).resolve().parents[2] / "peers"


class RunningWorker:
    """An AsyncWorker or Worker whose ``work()`` runs in a thread (its own event loop for the async one)."""

    def __init__(self, kind: str, servers: str | list[str], **settings: Any) -> None:
        self.kind = kind
        self.worker: AsyncWorker | Worker = (
            AsyncWorker(servers, **settings) if kind == "async" else Worker(servers, **settings)
        )
        self.handled: int | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self, max_jobs: int | None = None, *, burst: bool = False) -> RunningWorker:
        self._thread = threading.Thread(target=self._main, args=(max_jobs, burst), daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    def _main(self, max_jobs: int | None, burst: bool) -> None:
        try:
            if isinstance(self.worker, AsyncWorker):
                self.handled = asyncio.run(self._work_async(self.worker, max_jobs, burst))
            else:
                self._ready.set()
                self.handled = self.worker.work(max_jobs, burst=burst, handle_signals=False)
        except BaseException as exc:
            self.error = exc

    async def _work_async(self, worker: AsyncWorker, max_jobs: int | None, burst: bool) -> int:
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        return await worker.work(max_jobs, burst=burst, handle_signals=False)

    def stop(self, drain: bool = False) -> None:
        if self._loop is not None and isinstance(self.worker, AsyncWorker):
            self._loop.call_soon_threadsafe(self.worker.stop, drain)
        else:
            self.worker.stop(drain)

    def join(self, timeout: float = 30) -> int | None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error
        return self.handled

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


WorkerFactory = Callable[..., RunningWorker]


@pytest.fixture(params=["async", "blocking"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which front-end a behaviour test runs against."""
    return str(request.param)


@pytest.fixture
def worker_factory(kind: str) -> Iterator[WorkerFactory]:
    """Make workers of the test's front-end (not started); every one is stopped after the test."""
    made: list[RunningWorker] = []

    def factory(servers: str | list[str], **settings: Any) -> RunningWorker:
        running = RunningWorker(kind, servers, **settings)
        made.append(running)
        return running

    yield factory
    for running in made:
        if running.alive:
            running.stop()
            running.join()


def php_client(port: int, function: str, workload: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
    """Run foreground jobs through PHP's GearmanClient (libgearman); returns its events in order."""
    require("php", "php-cli + php-gearman")
    done = subprocess.run(
        ["php", str(PEERS / "php_client_events.php"), str(port), function, workload, str(count)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def gearman_cli(port: int, function: str, workload: str, timeout: float = 30) -> bytes:
    """One foreground job through the ``gearman`` command-line client; returns what it prints."""
    require("gearman", "gearman-tools")
    done = subprocess.run(
        ["gearman", "-h", "127.0.0.1", "-p", str(port), "-f", function, workload],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def php_submit_background(port: int, function: str, count: int, workload: str = "x") -> None:
    """Queue ``count`` background jobs through PHP's GearmanClient."""
    require("php", "php-cli + php-gearman")
    subprocess.run(
        ["php", str(PEERS / "php_submit_background.php"), str(port), function, str(count), workload],
        check=True,
        timeout=60,
    )
