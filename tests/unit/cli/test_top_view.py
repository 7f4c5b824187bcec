"""The top view's rows, rates and latencies from successive ``stats`` (or gearmand ``status``) snapshots."""

from __future__ import annotations

from rich.console import Console

from gearworks.admin import FunctionStats, FunctionStatus
from gearworks.cli.top import Rates, Snapshot, TopView, duration


def render(view: TopView) -> str:
    console = Console(width=140, record=True)
    console.print(view.table())
    return console.export_text()


def row(name: bytes, queued: int, completed: int, failed: int = 0, run_p99: float | None = None) -> FunctionStats:
    return FunctionStats(
        name, queued=queued, running=1, workers=2, submitted_foreground=(0, queued + completed + failed, 0),
        submitted_background=(0, 0, 0), completed=completed, failed=failed, exceptions=0, retried=0, timed_out=0,
        cancelled=0, dead_lettered=0, bytes_in=0, bytes_out=0, wait_p50=None, wait_p99=None, run_p50=None,
        run_p99=run_p99,
    )  # fmt: skip


def test_rates_are_counter_changes_per_second_and_p99_is_shown() -> None:
    view = TopView()
    view.update(Snapshot("s:1", 10.0, (row(b"resize", 10, 100),)))
    assert view.rates == {}
    view.update(Snapshot("s:1", 12.0, (row(b"resize", 4, 130, failed=2, run_p99=0.0123), row(b"new", 6, 0))))
    assert view.rates[("s:1", b"resize")] == Rates(submitted=(4 + 130 + 2 - 110) / 2, completed=15.0, failed=1.0)
    assert view.rates[("s:1", b"new")] == Rates(3.0, 0.0, 0.0)
    text = render(view)
    assert "15.0" in text
    assert "12.3ms" in text
    assert text.index("resize") > text.index("new")  # most queued + running first


def test_gearmand_status_rows_show_gauges_without_rates() -> None:
    view = TopView()
    view.update(Snapshot("g:1", 1.0, (FunctionStatus(b"f", 5, 1, 1),)))
    view.update(Snapshot("g:1", 2.0, (FunctionStatus(b"f", 9, 1, 1),)))
    assert view.rates == {}
    assert "8" in render(view)  # queued = total - running


def test_an_unreachable_server_shows_its_error_and_no_rate_across_it() -> None:
    view = TopView()
    view.update(Snapshot("s:1", 1.0, (row(b"f", 1, 0),)))
    view.update(Snapshot("s:1", 2.0, error="cannot connect to s:1"))
    assert "cannot connect to s:1" in render(view)
    view.update(Snapshot("s:1", 3.0, (row(b"f", 5, 0),)))
    assert view.rates == {}


def test_durations_read_in_the_unit_that_fits() -> None:
    assert [duration(None), duration(0.00042), duration(0.0123), duration(2.5)] == ["-", "420µs", "12.3ms", "2.5s"]
