"""What the counters and an idle HTTP listener cost, and how long a /metrics scrape of 1,000 functions takes.

Servers side by side, started afresh every round and interleaved within it (medians of the rounds, and of the
per-round ratios), driven by bench/server.py's raw-socket client and worker (the driver that leaves the server the
bottleneck):

- ``counters``: the server of this tree, counting, with ``--http-port 0`` (an idle HTTP listener sampling once a
  second);
- ``no http``: the same server without the HTTP listener (what the listener alone costs);
- ``baseline``: the same tree with its counting statements removed (each line of ``src`` that ends with
  ``# counted`` becomes ``pass``, see ``server/stats.py``) and no HTTP listener, run from a temporary copy of
  ``src``: the build that skips the counters. ``--baseline REV`` compares with the ``src`` of a git revision
  instead.

Each measurement records the jobs/s the driver saw and the CPU time the server process spent per job (from
``/proc/PID/task/*/schedstat``, in nanoseconds). On a shared machine throughput swings with other load; the CPU time
a server spends per job moves much less, so the overhead is read from it: CPU per job of the reference / of
``counters`` (1.0 = free; the target is a cost under 3 %). Then a real server gets
1,000 functions with a completed job each and ``GET /metrics`` is timed over HTTP (target: under 50 ms).

The end-to-end ratios move by a few per cent from run to run, more than the counters cost. So the counting
statements are also timed alone, in process (``CYCLE``: submissions, then hand-outs and completions through the
packet table, no sockets), in this tree and the baseline's, and their cost is printed as a share of the server's
CPU per job end to end. Ends with one ``RESULT {json}`` line.

Usage: python bench/metrics.py [--quick] [--rounds N] [--baseline REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.peers.raw_worker import RawWorker  # noqa: E402
from tests.servers import ServerProcess, gearworks_process  # noqa: E402

from bench.server import Driver, measure, raw_client, raw_worker_argv  # noqa: E402
from gearworks.protocol import PacketType  # noqa: E402

SCENARIOS = ("sequential", "pipelined fg", "pipelined bg", "drain 2 workers")
RAW = Driver("raw", raw_client, raw_worker_argv)


def _apply(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, for None, remove) environment variables while a child process is started."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


def start(name: str, baseline: Path | None) -> tuple[ServerProcess, int | None]:
    """One server of the comparison and its HTTP port (None without HTTP)."""
    if name == "counters":
        server = gearworks_process("--http-port", "0")
        server.start()
        server.port = server.announced("tcp")  # the first port seen listening may be the HTTP one
        return server, server.announced("http")
    if name == "no http":
        return gearworks_process().start(), None
    assert baseline is not None
    with environment(PYTHONPATH=str(baseline / "src")):
        return gearworks_process().start(), None


def cpu_ns(pid: int) -> int:
    """Nanoseconds of CPU every thread of process ``pid`` has run so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


MARK = "# counted"
"""The comment that ends every counting statement of the server (``server/stats.py``)."""


def uncounted(into: Path) -> Path:
    """A copy of this tree's ``src`` under ``into`` with every ``# counted`` line turned into ``pass``."""
    shutil.copytree(ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    stripped = 0
    for path in (into / "src").rglob("*.py"):
        lines = path.read_text().split("\n")
        for index, line in enumerate(lines):
            if MARK in line:
                lines[index] = line[: len(line) - len(line.lstrip())] + "pass"
                stripped += 1
        path.write_text("\n".join(lines))
    if not stripped:
        raise SystemExit(f"no line of src ends with {MARK!r}: nothing to compare with")
    return into


def export(revision: str, into: Path) -> Path:
    """The ``src`` tree of a git revision, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def counts(quick: bool) -> dict[str, int]:
    if quick:
        return {"sequential": 1500, "pipelined fg": 4000, "pipelined bg": 10000, "drain 2 workers": 10000}
    return {"sequential": 4000, "pipelined fg": 10000, "pipelined bg": 40000, "drain 2 workers": 40000}


def scrape_time(functions: int, repeats: int) -> dict[str, float]:
    """Milliseconds of ``GET /metrics`` on a server holding ``functions`` functions, each with a completed job, a
    queued one and a registered worker."""
    server, http_port = start("counters", None)
    try:
        names = [b"fn-%04d" % n for n in range(functions)]
        with RawWorker(server.port, {name: lambda job: b"ok" for name in names}) as worker:
            submit_each(server.port, names)
            deadline = time.monotonic() + 60
            while len(worker.seen) < functions:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(worker.seen)} of {functions} jobs ran")
                time.sleep(0.05)
            worker.stop()  # stop taking jobs: the next ones stay queued
            submit_each(server.port, names)
            url = f"http://127.0.0.1:{http_port}/metrics"
            times = []
            size = 0
            for _ in range(repeats):
                started = time.perf_counter()
                with urllib.request.urlopen(url, timeout=30) as response:
                    size = len(response.read())
                times.append((time.perf_counter() - started) * 1000)
        return {"best_ms": min(times), "median_ms": statistics.median(times), "bytes": size}
    finally:
        server.close()


def submit_each(port: int, names: list[bytes]) -> None:
    """One background job per function, pipelined on one connection."""
    from tests.integration.server_wire import Wire

    with Wire(port, timeout=60) as client:
        for name in names:
            client.send(PacketType.SUBMIT_JOB_BG, name, b"", b"x")
        client.recv(len(names))


CYCLE = """
import sys, time
from gearworks.protocol import PacketType as T
from gearworks.server.board import Board
from gearworks.server.dispatch import packet_table
from gearworks.server.jobs import HandleFactory
from gearworks.server.stats import Stats

count = int(sys.argv[1])
board = Board(handles=HandleFactory(b"H:bench"), stats=Stats())
table = packet_table(board)
client, worker = board.connect(), board.connect()
table[T.CAN_DO](worker, (b"f",))
submit, grab, complete = table[T.SUBMIT_JOB_BG], table[T.GRAB_JOB_ALL], table[T.WORK_COMPLETE]
payload, result = b"x" * 100, b"ok"
for _ in range(3):
    started = time.perf_counter_ns()
    for n in range(count):
        submit(client, (b"f", b"", payload))
        board.now = n * 1e-5
    client.take_out()
    submitted = time.perf_counter_ns()
    for handle in list(board.jobs):  # handed out oldest first
        grab(worker, ())
        complete(worker, (handle, result))
        worker.take_out()
    done = time.perf_counter_ns()
print((submitted - started) / count, (done - submitted) / count)
"""
"""One child process's in-process run: ``count`` background submissions through the packet table, then ``count``
hand-outs and completions, three times (the last counts); prints ns per job of each half."""


def cycle_costs(trees: dict[str, Path | None], rounds: int, count: int) -> dict[str, dict[str, float]]:
    """Nanoseconds per job of submitting and of grab + complete, in process (no sockets, no kernel: the counting
    statements' own cost), for each tree (None: this one), interleaved; medians of the rounds."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for round_number in range(rounds):
        for name in trees if round_number % 2 == 0 else list(trees)[::-1]:
            tree = trees[name]
            with environment(PYTHONPATH=str((tree or ROOT) / "src")):
                out = subprocess.run([sys.executable, "-c", CYCLE, str(count)], capture_output=True, check=True,
                                     text=True).stdout  # fmt: skip
            submit_ns, drain_ns = map(float, out.split())
            runs[name].append((submit_ns, drain_ns))
    return {
        name: {
            "submit": statistics.median(run[0] for run in values),
            "grab + complete": statistics.median(run[1] for run in values),
        }
        for name, values in runs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, three rounds")
    parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 3 with --quick, else 5)")
    parser.add_argument("--baseline", metavar="REV", help="git revision to compare with (default: this tree with its "
                        "counting statements removed)")  # fmt: skip
    parser.add_argument("--functions", type=int, default=1000, help="functions for the scrape measurement")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    names = ["counters", "no http", "baseline"]
    revision = args.baseline or "uncounted"
    started = time.monotonic()
    results: dict[str, dict[str, float]] = {}
    cpu: dict[str, dict[str, float]] = {}
    throughput: dict[str, dict[str, float]] = {}
    cost: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gearworks-baseline-") as tmp:
        baseline = export(args.baseline, Path(tmp)) if args.baseline else uncounted(Path(tmp))
        for scenario in SCENARIOS:
            rates: dict[str, list[float]] = {name: [] for name in names}
            costs: dict[str, list[float]] = {name: [] for name in names}
            count = counts(args.quick)[scenario]
            for round_number in range(rounds):
                # Fresh server processes every round: a process's own layout (hash seed, heap) moved an identical
                # tree by about 1 %, which one process per server for every round would count as a difference.
                servers = {name: start(name, baseline)[0] for name in names}
                try:
                    for server in servers.values():
                        measure(server, RAW, scenario, max(count // 10, 100))  # warm: first-use buffers, imports
                    # Interleaved, every server once per round, in turns first (ABBA): the first of a pair ran
                    # measurably slower on this machine, which would count against whichever always came first.
                    for name in names if round_number % 2 == 0 else names[::-1]:
                        before = cpu_ns(servers[name].pid)
                        rate = measure(servers[name], RAW, scenario, count)
                        per_job = (cpu_ns(servers[name].pid) - before) / count
                        rates[name].append(rate)
                        costs[name].append(per_job)
                        print(f"# {scenario} on {name}: {rate:,.0f} jobs/s, {per_job / 1000:.2f} µs CPU/job",
                              file=sys.stderr, flush=True)  # fmt: skip
                finally:
                    for server in servers.values():
                        server.close()
            results[scenario] = {name: statistics.median(rates[name]) for name in names}
            cpu[scenario] = {name: statistics.median(costs[name]) for name in names}
            throughput[scenario] = {name: median_ratio(rates["counters"], rates[name]) for name in names[1:]}
            cost[scenario] = {name: median_ratio(costs[name], costs["counters"]) for name in names[1:]}
        cycles = cycle_costs({"counters": None, "baseline": baseline}, rounds, 20000 if args.quick else 100000)
    scrape = scrape_time(args.functions, 10 if args.quick else 30)
    elapsed = time.monotonic() - started

    print(f"medians of {rounds} interleaved round(s), raw driver; {os.cpu_count()} CPUs; baseline {revision}")
    table("jobs/s (higher is better)", results, names, throughput, "{:,.0f}")
    table("server CPU µs per job (lower is better)", {scenario: {name: ns / 1000 for name, ns in row.items()}
          for scenario, row in cpu.items()}, names, cost, "{:.2f}")  # fmt: skip
    for name in names[1:]:
        mean = statistics.fmean(ratio[name] for ratio in cost.values())
        print(
            f"reference CPU / counters CPU vs {name}, mean over scenarios: {mean:.3f} (cost {100 * (1 - mean):+.1f} %)"
        )
    for phase, scenario in (("submit", "pipelined bg"), ("grab + complete", "drain 2 workers")):
        extra = cycles["counters"][phase] - cycles["baseline"][phase]
        share = extra / cpu[scenario]["counters"]
        print(
            f"in process, {phase}: {cycles['counters'][phase]:,.0f} vs {cycles['baseline'][phase]:,.0f} ns per job, "
            f"counting {extra:+,.0f} ns = {100 * share:.1f} % of the server's CPU per job in {scenario}"
        )
    print(
        f"GET /metrics, {args.functions} functions: best {scrape['best_ms']:.1f} ms, "
        f"median {scrape['median_ms']:.1f} ms, {scrape['bytes']:,} bytes"
    )
    print(f"({elapsed:.1f}s)")
    payload = {
        "quick": args.quick,
        "rounds": rounds,
        "baseline": revision,
        "jobs_per_second": results,
        "cpu_us_per_job": {scenario: {name: ns / 1000 for name, ns in row.items()} for scenario, row in cpu.items()},
        "throughput_ratios": throughput,
        "cpu_ratios": cost,
        "in_process_ns_per_job": cycles,
        "scrape": scrape,
        "functions": args.functions,
        "seconds": round(elapsed, 1),
    }
    print("RESULT " + json.dumps(payload, sort_keys=True))
    return 0


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the per-round ratios (each round's two servers ran back to back, under the same load)."""
    return statistics.median(top / bottom for top, bottom in zip(numerators, denominators, strict=True))


def table(
    title: str,
    values: dict[str, dict[str, float]],
    names: list[str],
    ratios: dict[str, dict[str, float]],
    spelling: str,
) -> None:
    """Print one table: a column per server, then counters against each reference (medians of per-round ratios,
    above 1.0 where the counters are ahead)."""
    header = f"{title:<40}" + "".join(f"{name:>12}" for name in names)
    header += "".join(f"{'vs ' + name:>14}" for name in names[1:])
    print(header)
    print("-" * len(header))
    for scenario, row in values.items():
        line = f"{scenario:<40}" + "".join(f"{spelling.format(row[name]):>12}" for name in names)
        line += "".join(f"{ratios[scenario][name]:>14.3f}" for name in names[1:])
        print(line)


if __name__ == "__main__":
    sys.exit(main())
