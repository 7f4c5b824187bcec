"""``gearworks submit``: send jobs from the shell, like the ``gearman`` client, with results in input order."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeRemainingColumn

from gearworks.cli.servers import add_server_arguments, connection_keywords, servers
from gearworks.client import AsyncClient
from gearworks.client.jobs import SubmitOptions
from gearworks.errors import GearworksError, JobError

__all__ = ["parse_when", "register"]

EXAMPLES = """examples:
  gearworks submit -f reverse hello            prints: olleh
  echo hello | gearworks submit -f reverse     the workload from stdin
  gearworks submit -f mail -b "to=ann"         background: prints the job handle
  gearworks submit -f report --at 2026-12-01T08:00 -u monthly
  gearworks submit -f resize --each-line < files.txt > sizes.txt
"""


def parse_when(text: str) -> float:
    """Epoch seconds from a number or an ISO 8601 time (local time when no zone is given).

    Raises:
        ValueError: neither.
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--at {text!r} is neither epoch seconds nor an ISO 8601 time") from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``submit`` subcommand."""
    parser = subparsers.add_parser(
        "submit",
        add_help=False,
        help="submit jobs (gearman -f)",
        description="Submit a job and print its result (foreground), or its handle (background).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data", nargs="?", help="the workload (default: read stdin)")
    parser.add_argument("-f", "--function", required=True, help="function name")
    parser.add_argument("-b", "--background", action="store_true", help="background job: print its handle")
    parser.add_argument("-u", "--unique", help="unique key (jobs with one key coalesce)")
    priority = parser.add_mutually_exclusive_group()
    priority.add_argument("--high", action="store_const", dest="priority", const="high", default="normal")
    priority.add_argument("--low", action="store_const", dest="priority", const="low")
    parser.add_argument("--at", type=parse_when, metavar="TIME", help="run at epoch seconds or ISO time (background)")
    parser.add_argument("--each-line", action="store_true", help="one job per input line, results in input order")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="fail a job not done in time")
    parser.add_argument("--prefix", help="function name prefix (prefix + TAB + name), as the workers use")
    add_server_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Submit and print; exit status 1 when a job failed."""
    raw = args.data.encode() if args.data is not None else sys.stdin.buffer.read()
    workloads = raw.splitlines() if args.each_line else [raw]
    return asyncio.run(_submit_all(args, workloads))


async def _submit_all(args: argparse.Namespace, workloads: list[bytes]) -> int:
    background = args.background or args.at is not None
    out = sys.stdout.buffer
    async with AsyncClient(servers(args), prefix=args.prefix, **connection_keywords(args)) as client:
        with _ProgressBar(len(workloads), args.each_line) as advance:
            jobs = []
            for workload in workloads:
                options: SubmitOptions = {"priority": args.priority, "timeout": args.timeout, "on_fail": advance}
                if args.unique is not None:
                    options["unique"] = args.unique
                if background:
                    options["on_created"] = advance
                    job = client.submit(args.function, workload, background=True, when=args.at, **options)
                else:
                    options["on_data"] = options["on_warning"] = _to_stderr
                    options["on_status"] = None if args.each_line else _status
                    options["on_complete"] = advance
                    job = client.submit(args.function, workload, **options)
                jobs.append(job)
            failed = 0
            for job in jobs:
                try:
                    result = await job
                except JobError as exc:
                    failed += 1
                    print(f"gearworks submit: {exc}", file=sys.stderr)
                    if args.each_line:
                        out.write(b"\n")
                    continue
                except GearworksError:
                    raise
                out.write(bytes(result) + (b"\n" if background or args.each_line else b""))
            out.flush()
    return 1 if failed else 0


def _to_stderr(data: bytes) -> None:
    sys.stderr.buffer.write(data + b"\n")
    sys.stderr.flush()


def _status(numerator: int, denominator: int) -> None:
    print(f"status {numerator}/{denominator}", file=sys.stderr)


class _ProgressBar:
    """A progress bar on a terminal for ``--each-line``; elsewhere nothing. Yields the per-job advance callback."""

    def __init__(self, total: int, wanted: bool) -> None:
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        if wanted and sys.stderr.isatty():
            self.bar = Progress(
                "{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.bar.add_task("jobs", total=total)

    def __enter__(self) -> Callable[[object], None]:
        if self.bar is not None:
            self.bar.start()
        return self.advance

    def advance(self, _job: object) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
