"""Counters and latency histograms of one job server: what admin ``stats``, ``/metrics`` and the dashboard show.

How this works: the counters are plain attributes of ``__slots__`` records, and the board increments them where
the events happen (a job submitted, handed out, completed, …), with sizes and durations it already has at hand.
They are always on, so an event costs an attribute increment or two: no method call, no lookup by name, no
allocation, formatting or clock read. Each of the board's functions holds its ``FunctionCounters`` (made by
``Stats.function`` with the function's first job; they outlive the function, since counters only grow).
Latencies go into fixed, log-spaced buckets (the same for every function, so Prometheus can aggregate them) and
quantiles are estimated from the buckets only when someone asks. Gauges (queued, running, workers) are not kept
here: they are read from the board when shown. This module imports nothing of the server.

Every statement of the server that counts ends with a ``# counted`` comment: ``bench/metrics.py`` turns those
lines into ``pass`` to build the same server without counters, the reference its overhead is measured against,
and ``tests/unit/server/test_stats.py`` checks that no counting statement goes unmarked.
"""

from __future__ import annotations

import time
from bisect import bisect_left

__all__ = ["BAD_INPUT_KINDS", "BUCKETS", "SUBMITTED_SLOT", "UNCOUNTED", "FunctionCounters", "Histogram", "Stats"]

BUCKETS: tuple[float, ...] = (
    *(float(f"{mantissa}e{exponent}") for exponent in range(-4, 3) for mantissa in (1, 3)),
    1000.0,
)
"""Upper bounds of the latency buckets in seconds, then +Inf: 100 µs, 300 µs, 1 ms, 3 ms … 300 s, 1000 s. Steps of
about √10 span sub-millisecond runs to queue waits of a quarter hour in 15 buckets: a /metrics scrape of 1,000
functions writes two histograms each, so every bucket costs 2,000 lines."""
BAD_INPUT_KINDS = ("packet", "magic", "command", "admin")
"""What ``bad_input`` is counted by: an undecodable packet (size, argument count, truncation), a response magic
where a request belongs, a packet type a client may not send, an admin line that is not a command."""
SUBMITTED_SLOT = (0, 2, 4)
"""``FunctionCounters.submitted[SUBMITTED_SLOT[priority] + background]`` counts a new job."""
_LAST = len(BUCKETS)


class Histogram:
    """Observations counted per bucket of ``BUCKETS`` (the last slot is +Inf), with their sum. The board inlines
    ``observe`` where it runs for every job: keep the two in step."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (_LAST + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration (``bisect_left``: a value equal to a bound falls in that bound's bucket, ``le``)."""
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        """Observations so far (summed when read: one increment less on every job)."""
        return sum(self.buckets)

    def cumulative(self) -> list[int]:
        """Observations at or below each bound, +Inf last: the ``_bucket`` series of a Prometheus histogram."""
        out = []
        running = 0
        for count in self.buckets:
            running += count
            out.append(running)
        return out

    def quantile(self, q: float) -> float | None:
        """Estimate the ``q`` quantile (0…1) by linear interpolation inside its bucket, as Prometheus'
        ``histogram_quantile`` does; None without observations. A quantile in +Inf reports the highest bound."""
        count = self.count
        if not count:
            return None
        rank = q * count
        running = 0
        for index, count in enumerate(self.buckets):
            if count and running + count >= rank:
                if index == _LAST:
                    return BUCKETS[-1]
                lower = BUCKETS[index - 1] if index else 0.0
                return lower + (BUCKETS[index] - lower) * max(rank - running, 0.0) / count
            running += count
        return BUCKETS[-1]


class FunctionCounters:
    """Everything counted for one function name since the server started.

    ``submitted`` is indexed by ``SUBMITTED_SLOT[priority] + background`` (high fg, high bg, normal fg, …).
    ``failed`` counts WORK_FAIL from a worker and foreground jobs failed after losing their worker ``--job-retries``
    times;
    ``timed_out``, ``cancelled`` and ``dead_lettered`` are the other ways a job ends without a result, ``retried``
    the hand-outs lost with their worker and queued again. ``bytes_in`` are workloads submitted, ``bytes_out``
    what workers sent back (results, data, warnings, exception payloads).
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "cancelled",
        "completed",
        "dead_lettered",
        "exceptions",
        "failed",
        "name",
        "retried",
        "run",
        "submitted",
        "timed_out",
        "wait",
    )

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.submitted = [0] * 6
        self.completed = 0
        self.failed = 0
        self.exceptions = 0
        self.retried = 0
        self.timed_out = 0
        self.cancelled = 0
        self.dead_lettered = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.wait = Histogram()
        """Seconds from submission (or requeue) to hand-out."""
        self.run = Histogram()
        """Seconds from hand-out to the worker's result (complete, fail or exception)."""

    @property
    def submitted_total(self) -> int:
        """Jobs created, every priority, foreground and background."""
        return sum(self.submitted)

    def submitted_by(self, priority: int, background: bool) -> int:
        """Jobs created at ``priority`` (0 high, 1 normal, 2 low), background or foreground."""
        return self.submitted[SUBMITTED_SLOT[priority] + background]

    @property
    def ended(self) -> int:
        """Jobs that left the server with an outcome."""
        return self.completed + self.failed + self.exceptions + self.timed_out + self.cancelled + self.dead_lettered


UNCOUNTED = FunctionCounters(b"")
"""The record of a function no job was created for yet: the board puts the function's own in its place before
the first event, so nothing is ever counted here."""


class Stats:
    """The counters of one server: a ``FunctionCounters`` per function name seen, and server-wide numbers.

    Args:
        started: the server's start time (``time.time()`` by default), for uptime.
    """

    def __init__(self, started: float | None = None) -> None:
        self.started = time.time() if started is None else started
        self.functions: dict[bytes, FunctionCounters] = {}
        self.connections_total = 0
        """Connections accepted since the start."""
        self.packets = 0
        """Binary request packets and admin lines read."""
        self.bad_input = dict.fromkeys(BAD_INPUT_KINDS, 0)
        """Malformed or unexpected input by kind (``BAD_INPUT_KINDS``)."""

    def uptime(self, now: float | None = None) -> float:
        """Seconds since the server started."""
        return (time.time() if now is None else now) - self.started

    def function(self, name: bytes) -> FunctionCounters:
        """The counters of ``name``, created on first use (they outlive a dropped function: counters only grow)."""
        counters = self.functions.get(name)
        if counters is None:
            counters = self.functions[name] = FunctionCounters(name)
        return counters
