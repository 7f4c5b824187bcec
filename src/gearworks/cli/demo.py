"""``gearworks demo``: a whole farm in one process — an embedded job server on a free loopback port, workers for
``reverse``, ``wordcount`` and a slow ``resize`` that reports progress, and a client submitting a mixed workload —
shown live, then stopped with a one-line summary. Nothing to configure, nothing left running."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from gearworks.client import AsyncClient, Job
from gearworks.errors import GearworksError
from gearworks.server.app import JobServer, ServerConfig
from gearworks.worker import AsyncWorker, WorkerJob

__all__ = ["Farm", "register"]

WORDS = b"the quick brown fox jumps over the lazy dog while gearman farms out the work".split()


def reverse(job: WorkerJob) -> bytes:
    """Reverse the workload."""
    return job.workload[::-1]


def wordcount(job: WorkerJob) -> bytes:
    """Count the words of the workload."""
    return b"%d" % len(job.workload.split())


async def resize(job: WorkerJob) -> bytes:
    """A slow job: ten steps, each reported with WORK_STATUS."""
    steps = 10
    for step in range(1, steps + 1):
        await asyncio.sleep(0.08)
        job.status(step, steps)
    return b"resized " + job.workload


@dataclass
class Farm:
    """What the demo counts as it runs: jobs submitted and done per function, progress of the slow ones."""

    submitted: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def table(self) -> Table:
        """Jobs per function and the throughput so far."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        total = sum(self.done.values())
        table = Table(title=f"gearworks demo — {total} jobs done, {total / elapsed:,.0f} jobs/s")
        for column in ("function", "submitted", "done", "failed"):
            table.add_column(column, justify="left" if column == "function" else "right")
        for name in self.submitted:
            table.add_row(name, str(self.submitted[name]), str(self.done[name]), str(self.failed[name]))
        return table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run a job server, workers and clients in one process and watch them",
        description="Start an embedded job server on a free loopback port, workers and a client with a mixed "
        "workload, show what happens live, and exit with a one-line summary.",
        epilog="example:\n  gearworks demo --jobs 2000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=600, help="quick jobs to submit (default 600)")
    parser.add_argument("--slow", type=int, default=8, help="slow resize jobs with progress (default 8)")
    parser.add_argument("--concurrency", type=int, default=16, help="jobs each worker runs at once (default 16)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every job completed."""
    if args.jobs < 0 or args.slow < 0 or args.concurrency < 1:
        raise ValueError("--jobs and --slow must be >= 0 and --concurrency >= 1")
    return asyncio.run(_demo(args.jobs, args.slow, args.concurrency, Console()))


async def _demo(quick: int, slow: int, concurrency: int, console: Console) -> int:
    server = JobServer(ServerConfig(host="127.0.0.1", port=0))
    address = (await server.start())[0].removeprefix("tcp://")
    serving = asyncio.create_task(server.serve())
    workers = [AsyncWorker(address, concurrency=concurrency, client_id=f"demo-{n}") for n in range(2)]
    for worker in workers:
        worker.register("reverse", reverse)
        worker.register("wordcount", wordcount)
        worker.register("resize", resize)
    working = [asyncio.create_task(worker.work(handle_signals=False)) for worker in workers]
    farm = Farm()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/10"))
    try:
        async with AsyncClient(address) as client:
            jobs = _submit(client, farm, progress, quick, slow)
            with Live(_view(farm, progress), console=console, refresh_per_second=10, transient=False) as live:
                waiting = asyncio.ensure_future(client.wait(jobs, timeout=120))
                while not waiting.done():
                    live.update(_view(farm, progress))
                    await asyncio.wait({waiting}, timeout=0.1)
                live.update(_view(farm, progress))
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*working, return_exceptions=True)
        server.stop()
        await asyncio.gather(serving, return_exceptions=True)
        await server.close()
    elapsed = time.monotonic() - farm.started
    done, failed = sum(farm.done.values()), sum(farm.failed.values())
    console.line()
    console.print(
        f"demo: {done} jobs done, {failed} failed in {elapsed:.2f} s ({done / max(elapsed, 1e-6):,.0f} jobs/s) "
        f"through an embedded server on {address}, 2 workers; all stopped."
    )
    return 0 if failed == 0 else 1


def _submit(client: AsyncClient, farm: Farm, progress: Progress, quick: int, slow: int) -> list[Job]:
    """Queue the mixed workload: reverse and wordcount jobs, and slow resize jobs with progress bars."""
    jobs = []

    def track(name: str) -> dict[str, object]:
        farm.submitted[name] += 1

        def complete(_: bytes) -> None:
            farm.done[name] += 1

        def fail(_: GearworksError) -> None:
            farm.failed[name] += 1

        return {"on_complete": complete, "on_fail": fail}

    for n in range(quick):
        words = b" ".join(WORDS[: 3 + n % len(WORDS)])
        name = "reverse" if n % 2 else "wordcount"
        jobs.append(client.submit(name, words, **track(name)))  # type: ignore[arg-type]
    for n in range(slow):
        bar: TaskID = progress.add_task(f"resize photo-{n}.jpg", total=10)
        callbacks = track("resize")

        def status(numerator: int, denominator: int, bar: TaskID = bar) -> None:
            progress.update(bar, completed=numerator * 10 / max(denominator, 1))

        jobs.append(client.submit("resize", b"photo-%d.jpg" % n, on_status=status, **callbacks))  # type: ignore[arg-type]
    return jobs


def _view(farm: Farm, progress: Progress) -> Group:
    return Group(farm.table(), progress)
