"""The top view's rows and rates from successive status snapshots."""

from __future__ import annotations

from rich.console import Console

from gearworks.admin import FunctionStatus
from gearworks.cli.top import Snapshot, TopView


def render(view: TopView) -> str:
    console = Console(width=120, record=True)
    console.print(view.table())
    return console.export_text()


def test_rates_are_changes_of_total_jobs_per_second() -> None:
    view = TopView()
    view.update(Snapshot("s:1", 10.0, (FunctionStatus(b"resize", 10, 2, 2),)))
    assert view.rates == {}
    view.update(Snapshot("s:1", 12.0, (FunctionStatus(b"resize", 4, 2, 2), FunctionStatus(b"new", 6, 0, 0))))
    assert view.rates == {("s:1", b"resize"): -3.0, ("s:1", b"new"): 3.0}
    text = render(view)
    assert "resize" in text
    assert "-3.0" in text
    assert text.index("resize") > text.index("new")  # busiest first


def test_an_unreachable_server_shows_its_error_and_no_rate_across_it() -> None:
    view = TopView()
    view.update(Snapshot("s:1", 1.0, (FunctionStatus(b"f", 1, 0, 0),)))
    view.update(Snapshot("s:1", 2.0, error="cannot connect to s:1"))
    assert "cannot connect to s:1" in render(view)
    view.update(Snapshot("s:1", 3.0, (FunctionStatus(b"f", 5, 0, 0),)))
    assert view.rates == {}
