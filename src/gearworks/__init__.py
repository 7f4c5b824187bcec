"""gearworks: the Gearman distributed job system in Python — protocol, clients, workers, admin and job server."""

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

__version__ = "0.1.0"

__all__ = [
    "ConnectionLost",
    "GearworksError",
    "JobError",
    "JobException",
    "JobFailed",
    "JobTimeout",
    "NoServerAvailable",
    "ProtocolError",
    "QueueError",
    "ServerError",
    "__version__",
]
