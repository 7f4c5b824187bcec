"""Gearman clients: AsyncClient (asyncio) and Client (blocking) over one sans-I/O ClientSession."""

from gearworks.client.aio import AsyncClient, AsyncTaskSet
from gearworks.client.blocking import BlockingTaskSet, Client
from gearworks.client.jobs import (
    CompleteEvent,
    CreatedEvent,
    DataEvent,
    Event,
    ExceptionEvent,
    FailEvent,
    Job,
    JobHandle,
    JobStatus,
    RetryEvent,
    StatusEvent,
    SubmitOptions,
    TaskSet,
    UniqueStatus,
    WarningEvent,
)
from gearworks.client.session import ClientOptions, ClientSession

__all__ = [
    "AsyncClient",
    "AsyncTaskSet",
    "BlockingTaskSet",
    "Client",
    "ClientOptions",
    "ClientSession",
    "CompleteEvent",
    "CreatedEvent",
    "DataEvent",
    "Event",
    "ExceptionEvent",
    "FailEvent",
    "Job",
    "JobHandle",
    "JobStatus",
    "RetryEvent",
    "StatusEvent",
    "SubmitOptions",
    "TaskSet",
    "UniqueStatus",
    "WarningEvent",
]
