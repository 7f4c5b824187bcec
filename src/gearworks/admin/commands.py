"""Admin commands shared by both admin clients: the line each sends and how its reply is read.

No I/O: ``AsyncAdmin`` and ``Admin`` only send ``command.line`` and hand the reply to ``command.result``.
Lines end in ``\\r\\n`` like gearadmin's, because gearmand 1.1.20's ``create function`` drops the last character
of a name sent with a bare ``\\n`` (PROTOCOL.md §4.2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, Unpack

from gearworks.admin import models
from gearworks.connection import RequestKeywords, ServerAddress, connect_options, parse_servers
from gearworks.errors import ProtocolError, ServerError
from gearworks.protocol import MAX_TEXT_LINE, AdminReply, ReplyShape, reply_shape
from gearworks.protocol.admin import MAX_WORDS

__all__ = [
    "AdminCommand",
    "AdminSettings",
    "cancel_job",
    "clients",
    "cluster",
    "create_function",
    "dead_letters",
    "drop_function",
    "getpid",
    "jobs",
    "maxqueue",
    "prioritystatus",
    "purge_dead",
    "raw",
    "requeue_dead",
    "show_jobs",
    "show_unique_jobs",
    "shutdown",
    "stats",
    "status",
    "verbose",
    "version",
    "workers",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AdminCommand(Generic[T]):
    """One command: the bytes to send, the shape of its reply and the parser of that reply."""

    line: bytes
    shape: ReplyShape
    parse: Callable[[AdminReply], T]

    def result(self, reply: AdminReply, server: str) -> T:
        """The parsed reply.

        Raises:
            ServerError: the server answered with an ERR line.
            ProtocolError: the reply is not what this command gets.
        """
        if reply.error:
            code, text = reply.error_parts()
            raise ServerError(code, text, server)
        return self.parse(reply)


class AdminSettings:
    """Where an admin client connects and how long it waits; shared by ``AsyncAdmin`` and ``Admin``.

    Args:
        server: ``host:port`` or a ServerAddress; None reads ``$GEARMAN_SERVERS`` (its first server).
        options: the connection keywords (``RequestKeywords``: timeouts, TLS, keepalive); ``command_timeout``
            [10.0] is how long each reply may take, after which the connection is closed and ConnectionLost raised.
    """

    def __init__(self, server: str | ServerAddress | None = None, **options: Unpack[RequestKeywords]) -> None:
        self.address = parse_servers(server)[0]
        self.connect_options = connect_options(options, RequestKeywords, type(self).__name__)
        self.timeout = options.get("command_timeout", 10.0)
        self._setup()

    def _setup(self) -> None:
        """Initialise the front-end's connection state (overridden)."""


def _word(value: str | bytes) -> bytes:
    word = value.encode() if isinstance(value, str) else bytes(value)
    if not word or any(c in word for c in b" \r\n"):
        raise ValueError(f"admin command argument {word!r} must be non-empty, without spaces or line breaks")
    return word


def _command(parse: Callable[[AdminReply], T], *words: str | bytes) -> AdminCommand[T]:
    line = b" ".join(_word(word) for word in words)
    if len(words) > MAX_WORDS:
        raise ValueError(f"admin command {line!r} has more than {MAX_WORDS} words")
    if len(line) + 2 > MAX_TEXT_LINE:
        raise ValueError(f"admin command longer than {MAX_TEXT_LINE - 2} bytes")
    return AdminCommand(line + b"\r\n", reply_shape(line), parse)


def _none(reply: AdminReply) -> None:
    models.parse_ok(reply)


def _pid(reply: AdminReply) -> int:
    return int(models.parse_ok(reply))


def _count(reply: AdminReply) -> int:
    text = models.parse_ok(reply)
    if not text.isdigit():
        raise ProtocolError(f"expected OK and a count, got {reply.raw[:200]!r}")
    return int(text)


def _version(reply: AdminReply) -> str:
    # gearmand answers `OK 1.1.20+ds`, the Perl server `v1.130.1`.
    text = reply.text
    return text[3:] if text.startswith("OK ") else text


def raw(line: str | bytes) -> AdminCommand[AdminReply]:
    """Any command line, sent as given (its reply returned unparsed; ERR lines still raise)."""
    data = line.encode() if isinstance(line, str) else bytes(line)
    data = data.rstrip(b"\r\n")
    if b"\n" in data or len(data) + 2 > MAX_TEXT_LINE:
        raise ValueError("an admin command is one line of at most 8190 bytes")
    return AdminCommand(data + b"\r\n", reply_shape(data), lambda reply: reply)


def status() -> AdminCommand[models.Rows[models.FunctionStatus]]:
    return _command(models.parse_status, "status")


def prioritystatus() -> AdminCommand[models.Rows[models.PriorityStatus]]:
    return _command(models.parse_prioritystatus, "prioritystatus")


def workers() -> AdminCommand[models.Rows[models.WorkerInfo]]:
    return _command(models.parse_workers, "workers")


def show_jobs() -> AdminCommand[models.Rows[models.JobInfo]]:
    return _command(models.parse_show_jobs, "show", "jobs")


def show_unique_jobs() -> AdminCommand[models.Rows[bytes]]:
    return _command(models.parse_show_unique_jobs, "show", "unique", "jobs")


def jobs() -> AdminCommand[models.Rows[models.QueuedJob]]:
    return _command(models.parse_jobs, "jobs")


def clients() -> AdminCommand[models.Rows[models.ClientInfo]]:
    return _command(models.parse_clients, "clients")


def version() -> AdminCommand[str]:
    return _command(_version, "version")


def getpid() -> AdminCommand[int]:
    return _command(_pid, "getpid")


def verbose() -> AdminCommand[str]:
    return _command(models.parse_ok, "verbose")


def maxqueue(function: str | bytes, size: int | tuple[int, int, int] | None = None) -> AdminCommand[None]:
    """``maxqueue FUNC`` (reset), ``maxqueue FUNC N`` (all priorities) or ``maxqueue FUNC H N L``."""
    sizes = () if size is None else (size,) if isinstance(size, int) else size
    return _command(_none, "maxqueue", function, *(str(int(n)) for n in sizes))


def create_function(function: str | bytes) -> AdminCommand[None]:
    return _command(_none, "create", "function", function)


def drop_function(function: str | bytes) -> AdminCommand[None]:
    return _command(_none, "drop", "function", function)


def cancel_job(handle: str | bytes) -> AdminCommand[None]:
    return _command(_none, "cancel", "job", handle)


def cluster() -> AdminCommand[models.Rows[models.ClusterNode]]:
    """gearworks' ``cluster``: the nodes sharing the server's store, their leases and jobs (``--cluster``)."""
    return _command(models.parse_cluster, "cluster")


def dead_letters() -> AdminCommand[models.Rows[models.DeadLetter]]:
    """gearworks' ``dead``: the dead letters of ``--job-retries``."""
    return _command(models.parse_dead_letters, "dead")


def requeue_dead(handle: str | bytes | None = None) -> AdminCommand[int]:
    """gearworks' ``dead requeue HANDLE|all``: how many dead letters went back to their queues."""
    return _command(_count, "dead", "requeue", "all" if handle is None else handle)


def purge_dead(handle: str | bytes | None = None) -> AdminCommand[int]:
    """gearworks' ``dead purge HANDLE|all``: how many dead letters were forgotten."""
    return _command(_count, "dead", "purge", "all" if handle is None else handle)


def stats(function: str | bytes | None = None) -> AdminCommand[models.Rows[models.FunctionStats]]:
    """gearworks' ``stats [FUNCTION]``: counters, gauges and latencies per function."""
    return _command(models.parse_stats, "stats", *(() if function is None else (function,)))


def shutdown(graceful: bool = False) -> AdminCommand[None]:
    """gearworks' server answers ``OK`` and closes; gearmand 1.1.20 answers ERR UNKNOWN_COMMAND (§4.2)."""
    return _command(_none, "shutdown", *(("graceful",) if graceful else ()))
