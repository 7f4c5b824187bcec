"""Job as an asyncio awaitable and event stream, without a server: the session's calls are made by hand."""

from __future__ import annotations

import asyncio

import pytest

from gearworks.client.jobs import CompleteEvent, CreatedEvent, DataEvent, Job, JobHandle
from gearworks.connection import ServerAddress
from gearworks.errors import JobFailed


def test_await_returns_result_and_iteration_yields_every_event() -> None:
    async def run() -> None:
        job = Job(b"f", b"w", b"")
        handle = JobHandle.on(b"H:1", ServerAddress())
        seen: list[object] = []

        async def consume() -> None:
            seen.extend([event async for event in job])

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        job._emit(CreatedEvent(handle))
        await asyncio.sleep(0)
        job._emit(DataEvent(b"d"))
        job._emit(CompleteEvent(b"r"))
        job._resolve(b"r")
        assert await job == b"r"
        await asyncio.wait_for(consumer, 5)
        assert seen == [CreatedEvent(handle), DataEvent(b"d"), CompleteEvent(b"r")]
        assert [event async for event in job] == seen  # a late iterator replays the events

    asyncio.run(run())


def test_cancelling_one_waiter_leaves_the_others_waiting() -> None:
    async def run() -> None:
        job = Job(b"f", b"w", b"")
        first = asyncio.create_task(_wait(job))
        second = asyncio.create_task(_wait(job))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        job._reject(JobFailed("boom"))
        with pytest.raises(JobFailed):
            await second
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(JobFailed):
            await job  # awaiting again after a cancelled wait still works

    asyncio.run(run())


async def _wait(job: Job) -> bytes:
    result: bytes = await job
    return result


def test_result_before_done_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not done"):
        Job(b"f", b"", b"").result()
