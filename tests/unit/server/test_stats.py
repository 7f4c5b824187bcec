"""Counters, histograms and the Prometheus text of ``server/stats.py`` and ``server/metrics.py``, without a server."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import gearworks.server
from gearworks.server.board import Board
from gearworks.server.jobs import Priority
from gearworks.server.metrics import Family, families, metric, registry, render
from gearworks.server.stats import BUCKETS, SUBMITTED_SLOT, Histogram, Stats


def parse(text: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by sample name, as prometheus-client's own parser reads them."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_buckets_are_fixed_and_log_spaced() -> None:
    assert BUCKETS[0] == 0.0001
    assert BUCKETS[-1] == 1000.0
    assert all(2.9 < later / earlier < 3.4 for earlier, later in itertools.pairwise(BUCKETS))


def test_histogram_counts_a_bound_in_its_own_bucket_and_overflow_in_inf() -> None:
    histogram = Histogram()
    for seconds in (0.0, 0.001, 0.0011, 5000.0):
        histogram.observe(seconds)
    cumulative = histogram.cumulative()
    assert cumulative[BUCKETS.index(0.001)] == 2  # 0 and 0.001 (le is inclusive)
    assert cumulative[BUCKETS.index(0.003)] == 3
    assert cumulative[-2] == 3
    assert cumulative[-1] == histogram.count == 4
    assert histogram.total == pytest.approx(5000.0021)


def test_quantiles_interpolate_inside_the_bucket() -> None:
    histogram = Histogram()
    assert histogram.quantile(0.5) is None
    for _ in range(99):
        histogram.observe(0.002)  # bucket (0.001, 0.003]
    histogram.observe(50.0)  # bucket (30, 100]
    p50 = histogram.quantile(0.5)
    assert p50 is not None
    assert 0.001 < p50 <= 0.003
    p99 = histogram.quantile(0.99)
    assert p99 is not None
    assert 0.001 < p99 <= 0.003
    top = histogram.quantile(1.0)
    assert top is not None
    assert 30 < top <= 100


def test_function_counters_sum_submissions_and_ends() -> None:
    stats = Stats(started=100.0)
    counters = stats.function(b"f")
    assert stats.function(b"f") is counters
    counters.submitted[SUBMITTED_SLOT[Priority.HIGH] + False] += 1
    counters.submitted[SUBMITTED_SLOT[Priority.LOW] + True] += 2
    counters.completed, counters.failed, counters.retried, counters.dead_lettered = 1, 2, 5, 1
    assert counters.submitted == [1, 0, 0, 0, 0, 2]
    assert counters.submitted_total == 3
    assert counters.submitted_by(Priority.LOW, True) == 2
    assert counters.ended == 4  # retried is not an end
    assert stats.uptime(now=160.0) == 60.0


def loaded(*names: bytes) -> tuple[Board, Stats]:
    stats = Stats()
    board = Board(stats=stats)
    for name in names:
        board.function(name)
        counters = stats.function(name)
        counters.submitted[SUBMITTED_SLOT[Priority.NORMAL] + True] += 1
        counters.submitted[SUBMITTED_SLOT[Priority.HIGH] + False] += 1
        counters.wait.observe(0.002)
        counters.run.observe(0.05)
        counters.completed += 1
    return board, stats


def test_metrics_parse_back_with_names_labels_and_values() -> None:
    board, _stats = loaded(b"resize")
    board.submit(b"resize", b"", b"x", background=True)
    samples = parse(render(families(board)))
    assert samples["gearworks_jobs_completed_total"] == [({"function": "resize"}, 1.0)]
    submitted = {(labels["priority"], labels["kind"], labels["function"]): n
                 for labels, n in samples["gearworks_jobs_submitted_total"]}  # fmt: skip
    assert submitted == {("normal", "background", "resize"): 2.0, ("high", "foreground", "resize"): 1.0}  # +1: submit
    queued = {labels["priority"]: value for labels, value in samples["gearworks_jobs_queued"]}
    assert queued == {"high": 0.0, "normal": 1.0, "low": 0.0}
    buckets = {labels["le"]: value for labels, value in samples["gearworks_job_wait_seconds_bucket"]}
    assert (buckets["0.001"], buckets["0.003"], buckets["+Inf"]) == (0.0, 1.0, 1.0)
    assert samples["gearworks_job_run_seconds_count"] == [({"function": "resize"}, 1.0)]
    assert samples["gearworks_bad_input_total"][0][0] == {"kind": "packet"}


@pytest.mark.parametrize(
    "name",
    [b"tab\there", b'say "hi"', "naïve ✓ 関数".encode(), b"back\\slash", b"new\nline", b"\xff\xfebinary"],
    ids=["tab", "quotes", "unicode", "backslash", "newline", "not-utf8"],
)
def test_label_values_survive_tabs_quotes_and_unicode(name: bytes) -> None:
    board, _stats = loaded(name, b"plain")
    samples = parse(render(families(board)))
    functions = {labels["function"] for labels, _ in samples["gearworks_jobs_completed_total"]}
    assert functions == {name.decode("utf-8", "backslashreplace"), "plain"}


class Fixed(Collector):
    """The families of one moment, so ``render`` and ``generate_latest`` are given the very same numbers."""

    def __init__(self, metrics: list[Family]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return map(metric, self.metrics)


def test_render_writes_the_bytes_generate_latest_writes() -> None:
    board, stats = loaded(b"a", b'b"\\', "ü".encode(), b"new\nline")
    board.function(b"idle")
    board.submit(b"a", b"", b"x" * 10, priority=Priority.LOW)
    counters = stats.function(b"a")
    counters.completed = 1_234_567  # Go spells it 1.234567e+06
    counters.run.observe(123.456)
    stats.bad_input["magic"] = 2
    metrics = families(board)
    assert render(metrics) == generate_latest(Fixed(metrics))


def test_a_registry_with_the_board_collector_writes_what_render_writes() -> None:
    board, _stats = loaded(b"a", "ü".encode())
    board.function(b"idle")
    uptime = b"gearworks_uptime_seconds "  # read twice, a moment apart

    def without_uptime(text: bytes) -> list[bytes]:
        return [line for line in text.splitlines() if not line.startswith(uptime)]

    assert without_uptime(generate_latest(registry(board))) == without_uptime(render(families(board)))


_NAMES = st.lists(st.binary(max_size=12), min_size=1, max_size=6, unique=True)
_COUNTS = st.integers(min_value=0, max_value=10**12)
_SECONDS = st.floats(min_value=0, max_value=5000, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(names=_NAMES, data=st.data())
def test_render_writes_the_bytes_generate_latest_writes_for_any_names_and_numbers(
    names: list[bytes], data: st.DataObject
) -> None:
    board, stats = loaded(*names)
    for name in names:
        counters = stats.function(name)
        counters.submitted[data.draw(st.integers(0, 5))] += data.draw(_COUNTS)
        counters.bytes_in, counters.failed = data.draw(_COUNTS), data.draw(_COUNTS)
        for seconds in data.draw(st.lists(_SECONDS, max_size=5)):
            counters.wait.observe(seconds)
        counters.run.buckets[data.draw(st.integers(0, len(BUCKETS)))] += data.draw(_COUNTS)
    metrics = families(board)
    assert render(metrics) == generate_latest(Fixed(metrics))


_COUNTING = re.compile(r"\b(counters|stats|wait|run)\b[\w.\[\]()]*(\s\+=|\.observe\()")
"""A statement that adds to a counter or a histogram (``counters.completed += 1``, ``wait.total += waited`` …)."""


def test_every_counting_statement_is_marked_for_the_uncounted_reference_build() -> None:
    # bench/metrics.py measures the counters' cost against this tree with the marked lines made ``pass``: a
    # counting statement without the mark would stay in the reference and hide its cost.
    server = Path(gearworks.server.__file__).parent
    readers = {"stats.py", "metrics.py", "api.py", "admin.py", "http.py"}  # they read the counters, off the job path
    unmarked = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(server.glob("*.py"))
        if path.name not in readers
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _COUNTING.search(line) and "# counted" not in line
    ]
    assert unmarked == []
    marked = sum(path.read_text().count("# counted") for path in server.glob("*.py"))
    assert marked >= 20  # the board, the packet table and the connections all count
