"""Typed rows of admin replies and how each is read from gearmand's bytes (PROTOCOL.md §4.2, §4.4).

Pure parsing: no sockets. Function names, handles, unique keys and client ids stay ``bytes`` like everywhere else
in gearworks; counts are ``int``. Every list result is a ``Rows``: a plain list that also carries the reply's raw
bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from gearworks.errors import ProtocolError
from gearworks.protocol import AdminReply

__all__ = [
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
    "parse_clients",
    "parse_cluster",
    "parse_dead_letters",
    "parse_jobs",
    "parse_ok",
    "parse_prioritystatus",
    "parse_show_jobs",
    "parse_show_unique_jobs",
    "parse_stats",
    "parse_status",
    "parse_workers",
]

T = TypeVar("T")


class Rows(list[T]):
    """The rows of a list reply, with the reply's bytes exactly as received in ``raw``."""

    raw: bytes

    def __init__(self, rows: list[T], raw: bytes) -> None:
        super().__init__(rows)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    """One ``status`` line: jobs of a function (queued + running), how many run now, registered workers."""

    function: bytes
    total: int
    running: int
    workers: int

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker."""
        return self.total - self.running


@dataclass(frozen=True, slots=True)
class PriorityStatus:
    """One ``prioritystatus`` line: queued (not running) jobs per priority, and registered workers."""

    function: bytes
    high: int
    normal: int
    low: int
    workers: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One ``workers`` line: a connection (gearmand lists clients and admin connections too).

    Attributes:
        fd: the server's file descriptor number for the connection.
        address: the peer's IP address.
        client_id: the id set by SET_CLIENT_ID, or None when gearmand shows ``-`` (none set).
        functions: registered functions, newest first as gearmand lists them.
    """

    fd: int
    address: str
    client_id: bytes | None
    functions: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One ``show jobs`` line: a job's handle, requeue count, whether it is cancelled/abandoned (ignored) and
    whether it is a background job kept by the queue backend (persisted)."""

    handle: bytes
    retries: int
    ignored: bool
    persisted: bool


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """One line of the Perl server's ``jobs``: function, unique key, the worker running it (None when queued)
    and how many foreground clients wait on it."""

    function: bytes
    unique: bytes
    worker: str | None
    listeners: int


@dataclass(frozen=True, slots=True)
class ClientJob:
    """A job a client waits on, in the Perl server's ``clients`` reply."""

    function: bytes
    unique: bytes
    worker: str | None


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One client connection in the Perl server's ``clients`` reply, with the jobs it waits on."""

    address: str
    jobs: tuple[ClientJob, ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One line of gearworks' ``dead``: a background job buried after ``--job-retries`` hand-outs without a
    result, with its function, unique key and how many times it was handed out."""

    handle: bytes
    function: bytes
    unique: bytes
    retries: int


@dataclass(frozen=True, slots=True)
class FunctionStats:
    """One line of gearworks' ``stats``: a function's gauges, its counters since the server started, and p50/p99
    of queue wait (submission to hand-out) and run time (hand-out to result) in seconds, None before the first job.

    ``submitted_foreground`` and ``submitted_background`` are jobs created per priority (high, normal, low).
    """

    function: bytes
    queued: int
    running: int
    workers: int
    submitted_foreground: tuple[int, int, int]
    submitted_background: tuple[int, int, int]
    completed: int
    failed: int
    exceptions: int
    retried: int
    timed_out: int
    cancelled: int
    dead_lettered: int
    bytes_in: int
    bytes_out: int
    wait_p50: float | None
    wait_p99: float | None
    run_p50: float | None
    run_p99: float | None

    @property
    def submitted(self) -> int:
        """Jobs created, every priority, foreground and background."""
        return sum(self.submitted_foreground) + sum(self.submitted_background)


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One line of gearworks' ``cluster`` (``--cluster`` mode): a node sharing the store, where it listens, the
    seconds its lease has left (negative once expired), the stored jobs it owns and its state: ``self`` (the node
    answering), ``fenced`` (the node answering, handing out no jobs), ``live``, ``expired`` (not renewed: peers take
    its jobs over one lease timeout later) or ``dead`` (about to be taken over)."""

    node: str
    address: str
    lease_left: float
    jobs: int
    state: str


def _int(field: bytes, reply: AdminReply) -> int:
    try:
        return int(field)
    except ValueError:
        raise ProtocolError(f"expected a number in admin reply, got {field!r} in {reply.raw[:200]!r}") from None


def _fields(line: bytes, count: int, reply: AdminReply) -> list[bytes]:
    # A function name may itself contain tabs (a client prefix puts one there: ``prefix\tname``), and it is the
    # first variable column of every row: split from the right, where the other columns are fixed. A unique key
    # (after the name in some rows) is read as tab-free.
    fields = line.rsplit(b"\t", count - 1)
    if len(fields) != count:
        raise ProtocolError(f"expected {count} tab-separated fields, got {line!r}")
    return fields


def _worker_or_none(field: bytes) -> str | None:
    return None if field == b"-" else field.decode("utf-8", "replace")


def parse_status(reply: AdminReply) -> Rows[FunctionStatus]:
    """``NAME\\tTOTAL\\tRUNNING\\tWORKERS`` lines."""
    rows = []
    for line in reply.lines:
        name, total, running, workers = _fields(line, 4, reply)
        rows.append(FunctionStatus(name, _int(total, reply), _int(running, reply), _int(workers, reply)))
    return Rows(rows, reply.raw)


def parse_prioritystatus(reply: AdminReply) -> Rows[PriorityStatus]:
    """``NAME\\tHIGH\\tNORMAL\\tLOW\\tWORKERS`` lines."""
    rows = []
    for line in reply.lines:
        name, *counts = _fields(line, 5, reply)
        high, normal, low, workers = (_int(count, reply) for count in counts)
        rows.append(PriorityStatus(name, high, normal, low, workers))
    return Rows(rows, reply.raw)


def parse_workers(reply: AdminReply) -> Rows[WorkerInfo]:
    """``FD IP CLIENT-ID : NAME NAME`` lines. The id may contain spaces (SET_CLIENT_ID takes any bytes), so it
    runs up to the first `` :`` that ends the line or is followed by a space; an empty id shows as two spaces."""
    rows = []
    for line in reply.lines:
        parts = line.split(b" ", 2)
        if len(parts) != 3:
            raise ProtocolError(f"bad workers line {line!r}")
        fd, address, rest = parts
        colon = rest.find(b" :")
        while colon >= 0 and rest[colon + 2 : colon + 3] not in (b"", b" "):
            colon = rest.find(b" :", colon + 1)
        if colon < 0:
            raise ProtocolError(f"bad workers line {line!r}")
        client_id = rest[:colon]
        names = rest[colon + 2 :]
        functions = tuple(names.split(b" ")[1:]) if names else ()
        rows.append(
            WorkerInfo(
                _int(fd, reply), address.decode("ascii", "replace"), None if client_id == b"-" else client_id, functions
            )
        )
    return Rows(rows, reply.raw)


def parse_show_jobs(reply: AdminReply) -> Rows[JobInfo]:
    """``HANDLE\\tRETRIES\\tIGNORED\\tPERSISTED`` lines."""
    rows = []
    for line in reply.lines:
        handle, retries, ignored, persisted = _fields(line, 4, reply)
        rows.append(JobInfo(handle, _int(retries, reply), ignored == b"1", persisted == b"1"))
    return Rows(rows, reply.raw)


def parse_show_unique_jobs(reply: AdminReply) -> Rows[bytes]:
    """One unique key a line (empty for jobs submitted without one)."""
    return Rows(list(reply.lines), reply.raw)


def parse_jobs(reply: AdminReply) -> Rows[QueuedJob]:
    """The Perl server's ``FUNC\\tUNIQUE\\tWORKER-or--\\tLISTENERS`` lines."""
    rows = []
    for line in reply.lines:
        function, unique, worker, listeners = _fields(line, 4, reply)
        rows.append(QueuedJob(function, unique, _worker_or_none(worker), _int(listeners, reply)))
    return Rows(rows, reply.raw)


def parse_clients(reply: AdminReply) -> Rows[ClientInfo]:
    """The Perl server's ``clients``: an ``ADDRESS:PORT`` line per client, then ``\\tFUNC\\tUNIQUE\\tWORKER`` per
    job it waits on."""
    clients: list[tuple[str, list[ClientJob]]] = []
    for line in reply.lines:
        if line.startswith(b"\t"):
            if not clients:
                raise ProtocolError(f"job line before any client in clients reply: {line!r}")
            function, unique, worker = _fields(line[1:], 3, reply)
            clients[-1][1].append(ClientJob(function, unique, _worker_or_none(worker)))
        else:
            clients.append((line.decode("utf-8", "replace"), []))
    return Rows([ClientInfo(address, tuple(jobs)) for address, jobs in clients], reply.raw)


def parse_dead_letters(reply: AdminReply) -> Rows[DeadLetter]:
    """gearworks' ``HANDLE\\tFUNCTION\\tUNIQUE\\tRETRIES`` lines (a handle has no tab; the function name may)."""
    rows = []
    for line in reply.lines:
        handle, tab, rest = line.partition(b"\t")
        if not tab:
            raise ProtocolError(f"expected tab-separated fields, got {line!r}")
        function, unique, retries = _fields(rest, 3, reply)
        rows.append(DeadLetter(handle, function, unique, _int(retries, reply)))
    return Rows(rows, reply.raw)


_STATS_COLUMNS = 23


def _seconds_or_none(field: bytes, reply: AdminReply) -> float | None:
    if field == b"-":
        return None
    try:
        return float(field)
    except ValueError:
        raise ProtocolError(f"expected seconds in admin reply, got {field!r} in {reply.raw[:200]!r}") from None


def parse_stats(reply: AdminReply) -> Rows[FunctionStats]:
    """gearworks' ``stats``: ``NAME``, 18 counts (queued, running, workers, six submitted, completed, failed,
    exceptions, retried, timed out, cancelled, dead-lettered, bytes in, bytes out) and four latencies, tab-separated
    (the name may hold tabs: the columns are split from the right)."""
    rows = []
    for line in reply.lines:
        name, *fields = _fields(line, _STATS_COLUMNS, reply)
        n = [_int(field, reply) for field in fields[:18]]
        latencies = [_seconds_or_none(field, reply) for field in fields[18:]]
        wait_p50, wait_p99, run_p50, run_p99 = latencies
        rows.append(
            FunctionStats(
                name,
                queued=n[0],
                running=n[1],
                workers=n[2],
                submitted_foreground=(n[3], n[4], n[5]),
                submitted_background=(n[6], n[7], n[8]),
                completed=n[9],
                failed=n[10],
                exceptions=n[11],
                retried=n[12],
                timed_out=n[13],
                cancelled=n[14],
                dead_lettered=n[15],
                bytes_in=n[16],
                bytes_out=n[17],
                wait_p50=wait_p50,
                wait_p99=wait_p99,
                run_p50=run_p50,
                run_p99=run_p99,
            )
        )
    return Rows(rows, reply.raw)


def parse_cluster(reply: AdminReply) -> Rows[ClusterNode]:
    """gearworks' ``NODE\tADDRESS\tLEASE_LEFT\tJOBS\tSTATE`` lines."""
    rows = []
    for line in reply.lines:
        node, address, left, jobs, state = _fields(line, 5, reply)
        try:
            lease_left = float(left)
        except ValueError:
            raise ProtocolError(f"expected seconds in admin reply, got {left!r}") from None
        rows.append(ClusterNode(node.decode(errors="replace"), address.decode(errors="replace"), lease_left,
                                _int(jobs, reply), state.decode(errors="replace")))  # fmt: skip
    return Rows(rows, reply.raw)


def parse_ok(reply: AdminReply) -> str:
    """The text after ``OK`` in a one-line reply (``OK 1.1.20+ds`` → ``1.1.20+ds``; ``OK\\r\\n`` → ``""``).

    Raises:
        ProtocolError: the line does not start with OK.
    """
    line = reply.lines[0] if reply.lines else b""
    if line != b"OK" and not line.startswith(b"OK "):
        raise ProtocolError(f"expected an OK line, got {reply.raw[:200]!r}")
    return line[3:].decode("utf-8", "replace")
