"""Both clients behind one test API, so each behaviour test runs against AsyncClient and Client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from gearworks.client import AsyncClient, Client, Job, JobHandle, JobStatus, UniqueStatus

T = TypeVar("T")


class Front:
    """A client of either kind with blocking methods; the async one runs on its own event loop per call."""

    def __init__(self, kind: str, servers: object, **options: Any) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self.client: AsyncClient | Client = AsyncClient(servers, **options) if self.loop else Client(servers, **options)  # type: ignore[arg-type]

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        assert self.loop is not None

        async def call() -> T:
            await self._idle()
            return await make()

        return self.loop.run_until_complete(call())

    @staticmethod
    async def _idle() -> None:
        """Let the loop notice what happened since the last call (a closed connection), as a running app would."""
        for _ in range(3):
            await asyncio.sleep(0)

    def _sync(self, make: Callable[[], T]) -> T:
        if self.loop is None:
            return make()

        async def call() -> T:
            await self._idle()
            return make()

        return self.loop.run_until_complete(call())

    def _either(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.client, name)
        if self.loop is None:
            return method(*args, **kwargs)
        return self._run(lambda: method(*args, **kwargs))

    def do(self, function: str | bytes, workload: object = b"", **options: Any) -> bytes:
        result: bytes = self._either("do", function, workload, **options)
        return result

    def submit(self, function: str | bytes, workload: bytes | str = b"", **options: Any) -> Job:
        return self._sync(lambda: self.client.submit(function, workload, **options))

    def submit_background(self, function: str | bytes, workload: bytes | str = b"", **options: Any) -> JobHandle:
        handle: JobHandle = self._either("submit_background", function, workload, **options)
        return handle

    def submit_many(self, function: str | bytes, workloads: list[Any], **options: Any) -> list[Job]:
        return self._sync(lambda: self.client.submit_many(function, workloads, **options))

    def submit_background_many(self, function: str | bytes, workloads: list[Any], **options: Any) -> list[JobHandle]:
        handles: list[JobHandle] = self._either("submit_background_many", function, workloads, **options)
        return handles

    def wait(self, jobs: list[Job], timeout: float | None = None) -> list[Job]:
        done: list[Job] = self._either("wait", jobs, timeout)
        return done

    def task_set(self, tasks: list[tuple[str, bytes, dict[str, Any]]], timeout: float | None = None) -> list[Job]:
        def build() -> Any:
            task_set = self.client.task_set()
            for function, workload, options in tasks:
                task_set.add(function, workload, **options)
            return task_set

        task_set = self._sync(build)
        if self.loop is None:
            jobs: list[Job] = task_set.wait(timeout)
            return jobs
        done: list[Job] = self._run(lambda: task_set.wait(timeout))
        return done

    def get_status(self, handle: bytes) -> JobStatus:
        status: JobStatus = self._either("get_status", handle)
        return status

    def get_status_unique(self, unique: bytes) -> UniqueStatus:
        status: UniqueStatus = self._either("get_status_unique", unique)
        return status

    def echo(self, data: bytes) -> bytes:
        echoed: bytes = self._either("echo", data)
        return echoed

    def option(self, name: str) -> None:
        self._either("option", name)

    def set_servers(self, servers: object) -> None:
        self._sync(lambda: self.client.set_servers(servers))  # type: ignore[arg-type]

    def connect(self) -> None:
        self._either("connect")

    def close(self) -> None:
        self._either("close")
        if self.loop is not None and not self.loop.is_closed():
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()


FrontFactory = Callable[..., Front]


@pytest.fixture(params=["async", "blocking"])
def front(request: pytest.FixtureRequest) -> Iterator[FrontFactory]:
    """Make clients of the parametrized kind (``front(servers, **options)``); all are closed after the test."""
    made: list[Front] = []

    def factory(servers: object, **options: Any) -> Front:
        client = Front(request.param, servers, **options)
        made.append(client)
        return client

    try:
        yield factory
    finally:
        for client in made:
            if client.loop is None or not client.loop.is_closed():
                client.close()
