"""The admin client: gearmand's text commands (status, workers, show jobs, ...) parsed into typed rows, asyncio
(``AsyncAdmin``) and blocking (``Admin``) over the same parsing."""

from gearworks.admin.aio import AsyncAdmin
from gearworks.admin.blocking import Admin
from gearworks.admin.models import (
    ClientInfo,
    ClientJob,
    ClusterNode,
    DeadLetter,
    FunctionStats,
    FunctionStatus,
    JobInfo,
    PriorityStatus,
    QueuedJob,
    Rows,
    WorkerInfo,
)

__all__ = [
    "Admin",
    "AsyncAdmin",
    "ClientInfo",
    "ClientJob",
    "ClusterNode",
    "DeadLetter",
    "FunctionStats",
    "FunctionStatus",
    "JobInfo",
    "PriorityStatus",
    "QueuedJob",
    "Rows",
    "WorkerInfo",
]
