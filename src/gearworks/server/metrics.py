"""The Prometheus view of a job server: metric families read from the board's gauges and ``Stats`` at each scrape.

Nothing is kept here: every scrape reads the counters and the board as they are. Names follow Prometheus'
conventions: a ``gearworks_`` prefix, ``_total`` counters, base units (``_seconds``, ``_bytes``), labels
``function`` and ``priority`` (and ``kind``, foreground or background, for submissions). Function names are bytes;
they become label values as UTF-8, undecodable bytes backslash-escaped so different names stay different series.

Two ways out of one list of families: ``BoardCollector`` is a prometheus-client ``Collector`` (register it in an
application's own registry, or read it with ``generate_latest``), and ``render`` writes the same bytes as
prometheus-client's ``generate_latest`` does for that collector, but faster: the library builds a ``Sample`` and
escapes and sorts labels for each line, about 4 µs each, and 1,000 functions make some 46,000 lines, four times
the 50 ms a scrape may take. ``render`` spells values with the library's own ``floatToGoString`` (small
integers without the call), escapes and orders labels by the library's rules and formats each label set once;
the tests hold it to ``generate_latest``'s output byte for byte. Reads the board, never changes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import cast

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from gearworks.server.board import Board
from gearworks.server.stats import BUCKETS, Histogram

__all__ = ["CONTENT_TYPE", "BoardCollector", "Family", "families", "label", "metric", "registry", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format ``render`` writes."""
_go = cast("Callable[[float], str]", floatToGoString)
"""prometheus-client's spelling of a sample value (its function, typed)."""


@dataclass(frozen=True, slots=True)
class Labels:
    """A constant set of labels besides ``function`` (a bucket's ``le``, a priority), made once at import with its
    text form, so a scrape formats no label it has formatted before."""

    pairs: tuple[tuple[str, str], ...]
    text: str


def _labels(*pairs: tuple[str, str]) -> Labels:
    """Labels written in name order, as ``generate_latest`` sorts them (``function`` sorts first of all ours)."""
    return Labels(pairs, "".join(f',{name}="{_escape(value)}"' for name, value in sorted(pairs)))


def _escape(value: str) -> str:
    """A label value in the text format: backslash, newline and double quote escaped, in prometheus-client's order."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """A sample value as prometheus-client spells it (``floatToGoString``: ``3.0``, ``1.5e+06``); integers under a
    million, most values of a scrape, without the call."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"
    return _go(value)


_NONE = _labels()
_LE = (*(repr(bound) for bound in BUCKETS), "+Inf")
_PRIORITIES = ("high", "normal", "low")
_QUEUED = tuple(_labels(("priority", name)) for name in _PRIORITIES)
_SUBMITTED = tuple(
    _labels(("priority", priority), ("kind", kind)) for priority in _PRIORITIES for kind in ("foreground", "background")
)
_BAD_INPUT: dict[str, Labels] = {}
_COUNTERS = (
    ("jobs_completed", "Jobs a worker completed (WORK_COMPLETE).", "completed"),
    ("jobs_failed", "Jobs ended by WORK_FAIL: from the worker, or after losing it --job-retries times.", "failed"),
    ("jobs_exceptions", "Jobs that ended with WORK_EXCEPTION.", "exceptions"),
    ("jobs_retried", "Hand-outs lost with their worker and queued again.", "retried"),
    ("jobs_timed_out", "Jobs failed because they outlived their worker's CAN_DO_TIMEOUT.", "timed_out"),
    ("jobs_cancelled", "Jobs cancelled by an admin.", "cancelled"),
    ("jobs_dead_lettered", "Background jobs buried after --job-retries lost hand-outs.", "dead_lettered"),
    ("workload_bytes", "Bytes of workloads submitted.", "bytes_in"),
    ("result_bytes", "Bytes workers sent back: results, data, warnings, exception payloads.", "bytes_out"),
)  # fmt: skip

Series = tuple[str, str | None, Labels, float]
"""One sample: full sample name, function label value (None: no function label), other labels, value."""


@dataclass(slots=True)
class Family:
    """One metric family: ``name`` without the ``_total`` of counters, ``kind`` as prometheus-client spells types
    (counter, gauge, histogram), and its samples: ``samples`` one by one, or for a histogram family
    ``histograms``, (function label, histogram) pairs whose 18 samples each are spelled out only when written."""

    name: str
    kind: str
    help: str
    samples: list[Series]
    histograms: list[tuple[str, Histogram]] = field(default_factory=list)

    def expanded(self) -> Iterator[Series]:
        """Every sample, the histograms' buckets, count and sum included."""
        yield from self.samples
        bucket, count, total = self.name + "_bucket", self.name + "_count", self.name + "_sum"
        for function, histogram in self.histograms:
            for le, running in zip(_LE, accumulate(histogram.buckets), strict=True):
                yield bucket, function, _labels(("le", le)), running
            yield count, function, _NONE, histogram.count
            yield total, function, _NONE, histogram.total


def label(name: bytes) -> str:
    """A function name as a label value: UTF-8, other bytes escaped as ``\\xNN``."""
    return name.decode("utf-8", "backslashreplace")


def families(board: Board) -> list[Family]:
    """Every metric family of the server now: per-function counters, histograms and gauges, then server-wide."""
    return [*_function_families(board), *_server_families(board)]


def _function_families(board: Board) -> Iterator[Family]:
    stats = board.stats
    names = {name: label(name) for name in (*board.functions, *stats.functions)}
    submitted = Family("gearworks_jobs_submitted", "counter", "Jobs created, by priority and kind.", [])
    counters = [(Family("gearworks_" + metric, "counter", text, []), counted) for metric, text, counted in _COUNTERS]
    wait = Family("gearworks_job_wait_seconds", "histogram", "Seconds from submission (or requeue) to hand-out.", [])
    run = Family("gearworks_job_run_seconds", "histogram", "Seconds from hand-out to the worker's result.", [])
    submitted_total = submitted.name + "_total"
    for name, counter in stats.functions.items():
        function = names[name]
        for index, count in enumerate(counter.submitted):
            if count:  # a priority and kind never used is left out, not written as a zero series
                submitted.samples.append((submitted_total, function, _SUBMITTED[index], count))
        for family, counted in counters:
            family.samples.append((family.name + "_total", function, _NONE, getattr(counter, counted)))
        wait.histograms.append((function, counter.wait))
        run.histograms.append((function, counter.run))
    queued = Family(
        "gearworks_jobs_queued", "gauge", "Jobs waiting for a worker (epoch jobs not yet due count as normal).", []
    )
    running = Family("gearworks_jobs_running", "gauge", "Jobs held by a worker now.", [])
    workers = Family("gearworks_workers", "gauge", "Worker registrations (CAN_DO) of the function.", [])
    for name, each in board.functions.items():
        function = names[name]
        high, normal, low = each.counts
        queued.samples.append(("gearworks_jobs_queued", function, _QUEUED[0], high))
        queued.samples.append(("gearworks_jobs_queued", function, _QUEUED[1], normal + each.delayed))
        queued.samples.append(("gearworks_jobs_queued", function, _QUEUED[2], low))
        running.samples.append(("gearworks_jobs_running", function, _NONE, each.running))
        workers.samples.append(("gearworks_workers", function, _NONE, len(each.workers)))
    dead = Family("gearworks_dead_letters", "gauge", "Dead letters waiting for an admin.", [])
    buried: dict[bytes, int] = {}
    for letter in board.dead.values():
        buried[letter.function] = buried.get(letter.function, 0) + 1
    for name, count in buried.items():
        dead.samples.append(("gearworks_dead_letters", names.get(name) or label(name), _NONE, count))
    yield submitted
    for family, _ in counters:
        yield family
    yield from (wait, run, queued, running, workers, dead)


def _one(name: str, kind: str, text: str, value: float) -> Family:
    return Family(name, kind, text, [(name + "_total" if kind == "counter" else name, None, _NONE, value)])


def _server_families(board: Board) -> Iterator[Family]:
    stats = board.stats
    peers = board.peers
    worker_peers = sum(1 for peer in peers if peer.abilities)
    yield _one("gearworks_connections", "gauge", "Connections open now.", len(peers))
    yield _one("gearworks_accepted_connections", "counter", "Connections accepted since the start.",
               stats.connections_total)  # fmt: skip
    yield _one("gearworks_worker_connections", "gauge", "Connections with at least one CAN_DO.", worker_peers)
    yield _one("gearworks_client_connections", "gauge", "Connections without CAN_DO (clients, admins).",
               len(peers) - worker_peers)  # fmt: skip
    yield _one("gearworks_packets", "counter", "Request packets and admin lines read.", stats.packets)
    bad = Family("gearworks_bad_input", "counter", "Malformed or unexpected input, by kind.", [])
    for kind, count in stats.bad_input.items():
        labels = _BAD_INPUT.get(kind) or _BAD_INPUT.setdefault(kind, _labels(("kind", kind)))
        bad.samples.append(("gearworks_bad_input_total", None, labels, count))
    yield bad
    yield _one("gearworks_start_time_seconds", "gauge", "When the server started (Unix time).", stats.started)
    yield _one("gearworks_uptime_seconds", "gauge", "Seconds since the server started.", stats.uptime())


def render(metrics: list[Family]) -> bytes:
    """The families in Prometheus' text format 0.0.4: the bytes ``generate_latest`` writes for them."""
    out: list[str] = []
    append = out.append
    escaped: dict[str, str] = {}
    for family in metrics:
        name = family.name + "_total" if family.kind == "counter" else family.name
        documentation = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        append(f"# HELP {name} {documentation}\n# TYPE {name} {family.kind}\n")
        for sample, function, labels, value in family.samples:
            if function is None:
                text = labels.text[1:]
            else:
                quoted = escaped.get(function)
                if quoted is None:
                    quoted = escaped[function] = _escape(function)
                text = f'function="{quoted}"{labels.text}'
            append(f"{sample}{{{text}}} {_number(value)}\n" if text else f"{sample} {_number(value)}\n")
        if family.histograms:
            _write_histograms(family, escaped, out)
    return "".join(out).encode()


def _write_histograms(family: Family, escaped: dict[str, str], out: list[str]) -> None:
    """The histograms' lines: most of a scrape (18 per function each), so one comprehension per histogram."""
    bucket, name = family.name + "_bucket", family.name
    for function, histogram in family.histograms:
        quoted = escaped.get(function)
        if quoted is None:
            quoted = escaped[function] = _escape(function)
        head = f'{bucket}{{function="{quoted}",le="'
        # ``_number`` inlined (the running counts are ints): a call per line made 1,000 functions 15 -> 18 ms.
        out.extend(
            [
                f'{head}{le}"}} {running}.0\n' if running < 1_000_000 else f'{head}{le}"}} {_go(running)}\n'
                for le, running in zip(_LE, accumulate(histogram.buckets), strict=True)
            ]
        )
        out.append(f'{name}_count{{function="{quoted}"}} {_number(histogram.count)}\n')
        out.append(f'{name}_sum{{function="{quoted}"}} {_go(histogram.total)}\n')


class BoardCollector(Collector):
    """The same families as prometheus-client metrics, for an application's own registry."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the functions present at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family, built as prometheus-client ``Metric`` objects."""
        return map(metric, families(self.board))


def metric(family: Family) -> Metric:
    """One family as a prometheus-client ``Metric``, every sample spelled out."""
    out = Metric(family.name, family.help, family.kind)
    for sample, function, labels, value in family.expanded():
        pairs = dict(labels.pairs)
        if function is not None:
            pairs["function"] = function
        out.samples.append(Sample(sample, pairs, value))
    return out


def registry(board: Board) -> CollectorRegistry:
    """A registry holding only this server's collector (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board))
    return registry
