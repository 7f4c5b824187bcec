"""gearworks: the Gearman distributed job system in Python — protocol, clients, workers, admin and job server.

The public API is what ``__all__`` lists; subpackages (``gearworks.protocol``, ``gearworks.server``, ...) hold the
rest. Names are loaded on first use (PEP 562), so ``import gearworks.protocol`` pulls in no client, worker, admin
or asyncio code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gearworks._version import __version__

if TYPE_CHECKING:
    from gearworks.admin import Admin, AsyncAdmin
    from gearworks.client import AsyncClient, Client, Job, JobHandle, JobStatus, UniqueStatus
    from gearworks.codecs import BytesCodec, Codec, JSONCodec
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

_HOMES = {
    "Admin": "gearworks.admin",
    "AsyncAdmin": "gearworks.admin",
    "AsyncClient": "gearworks.client",
    "AsyncWorker": "gearworks.worker",
    "BytesCodec": "gearworks.codecs",
    "Client": "gearworks.client",
    "Codec": "gearworks.codecs",
    "ConnectionLost": "gearworks.errors",
    "GearworksError": "gearworks.errors",
    "Job": "gearworks.client",
    "JobError": "gearworks.errors",
    "JobException": "gearworks.errors",
    "JobFailed": "gearworks.errors",
    "JobHandle": "gearworks.client",
    "JobStatus": "gearworks.client",
    "JobTimeout": "gearworks.errors",
    "JSONCodec": "gearworks.codecs",
    "NoServerAvailable": "gearworks.errors",
    "ProtocolError": "gearworks.errors",
    "QueueError": "gearworks.errors",
    "ServerError": "gearworks.errors",
    "UniqueStatus": "gearworks.client",
    "Worker": "gearworks.worker",
    "WorkerJob": "gearworks.worker",
}

__all__ = [
    "Admin",
    "AsyncAdmin",
    "AsyncClient",
    "AsyncWorker",
    "BytesCodec",
    "Client",
    "Codec",
    "ConnectionLost",
    "GearworksError",
    "JSONCodec",
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


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gearworks' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
