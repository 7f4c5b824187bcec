"""``gearworks top``: a live view of every server's functions (queued, running, workers), their rates (submitted,
completed, failed per second) and p99 wait and run times from gearworks' admin ``stats``, refreshed until ``q`` or
Ctrl-C. A server without ``stats`` (gearmand) is read with ``status``: its gauges are shown and its rates left blank."""

from __future__ import annotations

import argparse
import contextlib
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gearworks.admin import Admin, FunctionStats, FunctionStatus
from gearworks.cli.servers import add_server_arguments, connection_keywords, servers
from gearworks.connection import ServerAddress
from gearworks.errors import GearworksError, ServerError

__all__ = ["Snapshot", "TopView", "register"]

EXAMPLES = """examples:
  gearworks top                        the server in $GEARMAN_SERVERS or 127.0.0.1:4730
  gearworks top --servers a:4730,b:4730 --interval 2
"""


Row = FunctionStats | FunctionStatus


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One server's ``stats`` (or, from gearmand, ``status``) at one moment (``error`` set when unreadable)."""

    server: str
    at: float
    rows: tuple[Row, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Rates:
    """Jobs per second of one function between two snapshots."""

    submitted: float
    completed: float
    failed: float


def _failed(row: FunctionStats) -> int:
    """Every end but completion: fail, exception, timeout, cancel, dead letter."""
    return row.failed + row.exceptions + row.timed_out + row.cancelled + row.dead_lettered


@dataclass
class TopView:
    """What the screen shows, derived from successive snapshots: per function its gauges, rates and p99s."""

    previous: dict[str, Snapshot] = field(default_factory=dict)
    rates: dict[tuple[str, bytes], Rates] = field(default_factory=dict)

    def update(self, snapshot: Snapshot) -> None:
        """Take a new snapshot; rates are the changes of each function's counters per second since the last one."""
        before = self.previous.get(snapshot.server)
        if before is not None and before.error is None and snapshot.error is None and snapshot.at > before.at:
            old = {row.function: row for row in before.rows if isinstance(row, FunctionStats)}
            elapsed = snapshot.at - before.at
            for row in snapshot.rows:
                if not isinstance(row, FunctionStats):
                    continue
                last = old.get(row.function)
                submitted, completed, failed = (
                    (0, 0, 0) if last is None else (last.submitted, last.completed, _failed(last))
                )
                self.rates[(snapshot.server, row.function)] = Rates(
                    (row.submitted - submitted) / elapsed,
                    (row.completed - completed) / elapsed,
                    (_failed(row) - failed) / elapsed,
                )
        self.previous[snapshot.server] = snapshot

    def table(self) -> Table:
        """The current view as a table, busiest functions first."""
        table = Table(expand=True, title=f"gearworks top — {time.strftime('%H:%M:%S')} — q to quit")
        for name, justify in (
            ("SERVER", "left"),
            ("FUNCTION", "left"),
            ("QUEUED", "right"),
            ("RUNNING", "right"),
            ("WORKERS", "right"),
            ("IN/s", "right"),
            ("DONE/s", "right"),
            ("FAIL/s", "right"),
            ("WAIT p99", "right"),
            ("RUN p99", "right"),
        ):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for server, snapshot in self.previous.items():
            if snapshot.error is not None:
                table.add_row(server, Text(snapshot.error, style="red"), *[""] * 8)
                continue
            for row in sorted(snapshot.rows, key=lambda r: (-r.queued - r.running, r.function)):
                rate = self.rates.get((server, row.function))
                rates = ["", "", ""] if rate is None else [f"{rate.submitted:.1f}", f"{rate.completed:.1f}",
                                                           f"{rate.failed:.1f}"]  # fmt: skip
                table.add_row(
                    server,
                    row.function.decode("utf-8", "backslashreplace"),
                    str(row.queued),
                    str(row.running),
                    str(row.workers),
                    *rates,
                    duration(row.wait_p99) if isinstance(row, FunctionStats) else "",
                    duration(row.run_p99) if isinstance(row, FunctionStats) else "",
                )
        return table


def duration(seconds: float | None) -> str:
    """A latency for a person: µs, ms or s with two or three significant digits; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds:.3g}s"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``top`` subcommand."""
    parser = subparsers.add_parser(
        "top",
        add_help=False,
        help="live view of the servers' functions",
        description="Show every server's functions (queued, running, workers, rates, p99 latencies) live, refreshed "
        "until q or Ctrl-C.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="refresh period (default 1)")
    parser.add_argument("--iterations", type=int, default=0, metavar="N", help="stop after N refreshes (0: never)")
    add_server_arguments(parser)
    parser.set_defaults(handler=run)


def poll(admin: Admin, address: ServerAddress) -> Snapshot:
    """Read one server's ``stats`` (``status`` when it has none, like gearmand); a failure becomes a snapshot with
    ``error`` (the admin reconnects next time)."""
    try:
        try:
            rows: tuple[Row, ...] = tuple(admin.stats())
        except ServerError:
            rows = tuple(admin.status())
        return Snapshot(str(address), time.monotonic(), rows)
    except GearworksError as exc:
        admin.close()
        return Snapshot(str(address), time.monotonic(), error=str(exc))


@contextlib.contextmanager
def keys() -> Iterator[bool]:
    """Put a terminal stdin in cbreak mode (so ``q`` arrives without Enter); yields whether stdin is a terminal."""
    if not sys.stdin.isatty():
        yield False
        return
    saved = termios.tcgetattr(sys.stdin)
    try:
        tty.setcbreak(sys.stdin.fileno())
        yield True
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


def quit_pressed(timeout: float, interactive: bool) -> bool:
    """Wait up to ``timeout`` for ``q``; True when it was pressed."""
    if not interactive:
        time.sleep(timeout)
        return False
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sys.stdin], [], [], left)
        if ready and sys.stdin.read(1) in ("q", "Q"):
            return True
    return False


def run(args: argparse.Namespace) -> int:
    """Refresh the view every ``--interval`` seconds until q, Ctrl-C or ``--iterations``."""
    connection = connection_keywords(args)
    admins = [(address, Admin(address, **connection)) for address in servers(args)]
    view = TopView()
    console = Console()
    count = 0
    try:
        with keys() as interactive, Live(console=console, screen=interactive, auto_refresh=False) as live:
            while True:
                for address, admin in admins:
                    view.update(poll(admin, address))
                live.update(Group(view.table()), refresh=True)
                count += 1
                if count == args.iterations or quit_pressed(args.interval, interactive):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        for _, admin in admins:
            admin.close()
    return 0
