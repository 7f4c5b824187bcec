"""gearworks: the Gearman distributed job system in Python — protocol, clients, workers, admin and job server.

The public API is what ``__all__`` lists; subpackages (``gearworks.protocol``, ``gearworks.server``, ...) hold the
rest.
"""

__version__ = "0.1.0"

from gearworks.admin import Admin, AsyncAdmin
from gearworks.client import AsyncClient, Client, Job, JobHandle, JobStatus, UniqueStatus
from gearworks.errors import (
    ConnectionLost,
    GearworksError,
    JobError,
    JobException,
    JobFailed,
    JobTimeout,
    NoServerAvailable,
    ProtocolError,
    QueueError,
    ServerError,
)
from gearworks.worker import AsyncWorker, Worker, WorkerJob

__all__ = [
    "Admin",
    "AsyncAdmin",
    "AsyncClient",
    "AsyncWorker",
    "Client",
    "ConnectionLost",
    "GearworksError",
    "Job",
    "JobError",
    "JobException",
    "JobFailed",
    "JobHandle",
    "JobStatus",
    "JobTimeout",
    "NoServerAvailable",
    "ProtocolError",
    "QueueError",
    "ServerError",
    "UniqueStatus",
    "Worker",
    "WorkerJob",
    "__version__",
]
