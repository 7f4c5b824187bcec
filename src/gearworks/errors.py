"""The gearworks exception tree: every error the library raises on purpose derives from GearworksError.

Misuse (a NUL in a function name, a payload over the packet limit) raises ValueError before anything is sent;
what a peer or the network did wrong raises one of these.
"""

from __future__ import annotations

__all__ = [
    "ClientClosed",
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
]


class GearworksError(Exception):
    """Base class of every gearworks error."""


class ProtocolError(GearworksError):
    """The peer's bytes break the Gearman protocol (magic, type, argument count, size, truncation)."""


class ConnectionLost(GearworksError, ConnectionError):
    """A connection to a job server closed or failed mid-conversation."""


class ClientClosed(GearworksError, RuntimeError):
    """A closed client was used; ``connect()`` opens it again."""


class NoServerAvailable(GearworksError):
    """Every configured job server is down or backing off."""


class ServerError(GearworksError):
    """The server answered with an ERROR packet or an admin ERR line."""

    def __init__(self, code: str, text: str, server: str | None = None) -> None:
        where = f" from {server}" if server else ""
        super().__init__(f"{code}: {text}{where}" if text else f"{code}{where}")
        self.code = code
        self.text = text
        self.server = server


class JobError(GearworksError):
    """A foreground job did not complete."""

    def __init__(self, message: str, *, handle: bytes | None = None, function: bytes | None = None) -> None:
        super().__init__(message)
        self.handle = handle
        self.function = function


class JobFailed(JobError):
    """The worker reported WORK_FAIL (or the server failed the job)."""


class JobException(JobError):
    """The worker reported WORK_EXCEPTION; the exception payload is in ``data``."""

    def __init__(
        self, message: str, data: bytes, *, handle: bytes | None = None, function: bytes | None = None
    ) -> None:
        super().__init__(message, handle=handle, function=function)
        self.data = data


class JobTimeout(JobError, TimeoutError):
    """A job (or a wait on it) ran past its timeout."""


class QueueError(GearworksError):
    """A durable queue backend refused or lost a write."""
