"""The JSON documents of the HTTP API and the dashboard, and the once-a-second history behind their rates and charts.

How this works: every document is built on request from the board (gauges: queued, running, workers, dead letters)
and ``Stats`` (counters, histograms). Rates need two points in time, so ``History`` samples the totals once a second
(from a loop timer the HTTP server arms; nothing on the job path): the last ``HISTORY_SECONDS`` of server-wide
points feed the charts, and per-function totals of the last ``RATE_WINDOW`` seconds give each function's rates.
Function names, handles and unique keys are bytes; JSON gets them as UTF-8 text, other bytes backslash-escaped.
Reads the board, never changes it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from gearworks._version import __version__
from gearworks.server.board import Board
from gearworks.server.stats import BUCKETS, FunctionCounters, Histogram

__all__ = [
    "HISTORY_SECONDS",
    "RATE_WINDOW",
    "History",
    "Point",
    "counters",
    "dead_letters",
    "function_detail",
    "status",
    "workers",
]

HISTORY_SECONDS = 600
"""How far back the charts go: ten minutes of one-second points."""
RATE_WINDOW = 10
"""Seconds a function's rates are averaged over."""

Json = dict[str, Any]


def text(value: bytes) -> str:
    """Bytes from the wire as JSON text: UTF-8, other bytes as ``\\xNN``."""
    return value.decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Point:
    """Server-wide totals at one moment: counters (only grow) and gauges."""

    at: float
    submitted: int
    completed: int
    failed: int
    queued: int
    running: int


def _ended_badly(counters: FunctionCounters) -> int:
    return counters.ended - counters.completed


class History:
    """Totals sampled once a second: the server's for the charts, each function's for its rates."""

    def __init__(self) -> None:
        self.points: deque[Point] = deque(maxlen=HISTORY_SECONDS)
        self._functions: deque[tuple[float, dict[bytes, tuple[int, int, int]]]] = deque(maxlen=RATE_WINDOW + 1)

    def sample(self, board: Board, now: float) -> None:
        """Take one point (called every second by the HTTP server's timer): its cost grows with the functions that
        had jobs and the connections, not with every name registered."""
        totals: dict[bytes, tuple[int, int, int]] = {}
        submitted = completed = failed = 0
        for name, counters in board.stats.functions.items():
            each = (counters.submitted_total, counters.completed, _ended_badly(counters))
            totals[name] = each
            submitted += each[0]
            completed += each[1]
            failed += each[2]
        # From the jobs and peers, not the functions: a worker may register many names that never get a job.
        running = sum(len(peer.running) for peer in board.peers)
        self.points.append(Point(now, submitted, completed, failed, len(board.jobs) - running, running))
        self._functions.append((now, totals))

    def rates(self, name: bytes) -> tuple[float, float, float]:
        """Jobs per second submitted, completed and failed (any end but completion) over the rate window."""
        if len(self._functions) < 2:
            return 0.0, 0.0, 0.0
        first_at, first = self._functions[0]
        last_at, last = self._functions[-1]
        now = last.get(name)
        if now is None or last_at <= first_at:
            return 0.0, 0.0, 0.0
        before = first.get(name, (0, 0, 0))
        elapsed = last_at - first_at
        return tuple((now[i] - before[i]) / elapsed for i in range(3))  # type: ignore[return-value]

    def series(self) -> list[Json]:
        """The chart points: per second since the previous point, rates of submitted, completed and failed jobs,
        and queued and running jobs."""
        out: list[Json] = []
        previous: Point | None = None
        for point in self.points:
            if previous is not None and point.at > previous.at:
                elapsed = point.at - previous.at
                out.append(
                    {
                        "at": round(point.at, 3),
                        "submitted": (point.submitted - previous.submitted) / elapsed,
                        "completed": (point.completed - previous.completed) / elapsed,
                        "failed": (point.failed - previous.failed) / elapsed,
                        "queued": point.queued,
                        "running": point.running,
                    }
                )
            previous = point
        return out


def _quantiles(histogram: Histogram) -> Json:
    return {"p50": histogram.quantile(0.5), "p99": histogram.quantile(0.99), "count": histogram.count}


def _counters(counters: FunctionCounters | None) -> Json:
    if counters is None:
        counters = FunctionCounters(b"")
    return {
        "submitted": counters.submitted_total,
        "submitted_by_priority": {
            priority: {
                "foreground": counters.submitted_by(index, False),
                "background": counters.submitted_by(index, True),
            }
            for index, priority in enumerate(("high", "normal", "low"))
        },
        "completed": counters.completed,
        "failed": counters.failed,
        "exceptions": counters.exceptions,
        "retried": counters.retried,
        "timed_out": counters.timed_out,
        "cancelled": counters.cancelled,
        "dead_lettered": counters.dead_lettered,
        "bytes_in": counters.bytes_in,
        "bytes_out": counters.bytes_out,
    }


def _function_row(board: Board, history: History, name: bytes) -> Json:
    function = board.functions.get(name)
    counters = board.stats.functions.get(name)
    submitted, completed, failed = history.rates(name)
    if function is None:
        queued = running = workers = 0
    else:
        counts = function.counts
        queued = counts[0] + counts[1] + counts[2] + function.delayed
        running = function.running
        workers = len(function.workers)
    row: Json = {"name": text(name), "queued": queued, "running": running, "workers": workers}
    row.update(_counters(counters))
    row["rates"] = {"submitted": submitted, "completed": completed, "failed": failed}
    row["wait"] = _quantiles(counters.wait if counters is not None else Histogram())
    row["run"] = _quantiles(counters.run if counters is not None else Histogram())
    return row


def _names(board: Board) -> list[bytes]:
    return list(dict.fromkeys((*board.functions, *board.stats.functions)))


def _server(board: Board) -> Json:
    stats = board.stats
    peers = board.peers
    worker_peers = sum(1 for peer in peers if peer.abilities)
    return {
        "version": __version__,
        "uptime": stats.uptime(),
        "connections": len(peers),
        "connections_total": stats.connections_total,
        "workers": worker_peers,
        "clients": len(peers) - worker_peers,
        "packets": stats.packets,
        "bad_input": dict(stats.bad_input),
        "jobs": len(board.jobs),
        "dead_letters": len(board.dead),
    }


def status(board: Board, history: History) -> Json:
    """``/api/status``: the server, every function with gauges, counters, rates and p50/p99, and the chart series."""
    return {
        "server": _server(board),
        "functions": [_function_row(board, history, name) for name in _names(board)],
        "history": history.series(),
    }


def counters(board: Board) -> Json:
    """``/api/stats``: the raw counters, server-wide and per function (no rates: they need two scrapes)."""
    return {
        "server": _server(board),
        "functions": {text(name): _counters(each) for name, each in board.stats.functions.items()},
    }


def function_detail(board: Board, history: History, name: bytes) -> Json | None:
    """``/api/functions/{name}``: one function's row with its histograms' buckets; None when unknown."""
    if name not in board.functions and name not in board.stats.functions:
        return None
    row = _function_row(board, history, name)
    counters = board.stats.functions.get(name)
    bounds = [*BUCKETS, None]  # None: +Inf
    for key, histogram in (("wait", counters.wait if counters else None), ("run", counters.run if counters else None)):
        counts = histogram.buckets if histogram is not None else [0] * len(bounds)
        row[key]["buckets"] = [{"le": le, "count": count} for le, count in zip(bounds, counts, strict=True)]
        row[key]["sum"] = histogram.total if histogram is not None else 0.0
    return row


def workers(board: Board) -> list[Json]:
    """``/api/workers``: every connection that registered a function, with its client id and jobs in hand."""
    return [
        {
            "fd": peer.fd,
            "address": text(peer.address),
            "client_id": None if peer.client_id == b"-" else text(peer.client_id),
            "functions": [text(function.name) for function in reversed(peer.abilities)],
            "running": [text(job.handle) for job in peer.running],
        }
        for peer in board.peers
        if peer.abilities
    ]


def dead_letters(board: Board) -> list[Json]:
    """``/api/dead-letters``: the buried jobs, oldest first."""
    return [
        {
            "handle": text(dead.handle),
            "function": text(dead.function),
            "unique": text(dead.unique),
            "retries": dead.retries,
            "priority": dead.priority.name.lower(),
            "size": len(dead.workload),
        }
        for dead in board.dead.values()
    ]
