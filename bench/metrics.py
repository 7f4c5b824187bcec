"""What the counters and an idle HTTP listener cost, and how long a /metrics scrape of 1,000 functions takes.

Servers side by side, interleaved within every scenario (best of the rounds is kept), driven by bench/server.py's
raw-socket client and worker (the driver that leaves the server the bottleneck):

- ``counters``: the server as shipped, counting, with ``--http-port 0`` (an idle HTTP listener sampling once a
  second);
- ``no-op``: ``GEARWORKS_STATS=off``, no HTTP listener: the stats object's methods are empty, so what remains is
  the calls themselves (a few per job);
- ``baseline`` (with ``--baseline REV``): the source tree of git revision REV (e.g. the commit before the counters
  came in), run from a temporary export: no counting code at all.

The ratio counters / reference is printed per scenario; the target is a cost under 3 %. Then a real server gets
1,000 functions with a completed job each and ``GET /metrics`` is timed over HTTP (target: under 50 ms). Ends with
one ``RESULT {json}`` line.

Usage: python bench/metrics.py [--quick] [--rounds N] [--baseline REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

from bench.server import Driver, measure, raw_client, raw_worker_argv  # noqa: E402
from tests.peers.raw_worker import RawWorker  # noqa: E402
from tests.servers import ServerProcess, gearworks_process  # noqa: E402

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
    if name == "no-op":
        with environment(GEARWORKS_STATS="off"):
            return gearworks_process().start(), None
    assert baseline is not None
    with environment(PYTHONPATH=str(baseline / "src"), GEARWORKS_STATS=None):
        return gearworks_process().start(), None


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, three rounds")
    parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 3 with --quick, else 5)")
    parser.add_argument("--baseline", metavar="REV", help="also run the server of this git revision")
    parser.add_argument("--functions", type=int, default=1000, help="functions for the scrape measurement")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    names = ["counters", "no-op", *(["baseline"] if args.baseline else [])]
    started = time.monotonic()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gearworks-baseline-") as tmp:
        baseline = export(args.baseline, Path(tmp)) if args.baseline else None
        servers = {name: start(name, baseline)[0] for name in names}
        try:
            for scenario in SCENARIOS:
                best = dict.fromkeys(names, 0.0)
                for _ in range(rounds):
                    for name in names:  # interleaved: every server once per round
                        rate = measure(servers[name], RAW, scenario, counts(args.quick)[scenario])
                        best[name] = max(best[name], rate)
                        print(f"# {scenario} on {name}: {rate:,.0f} jobs/s", file=sys.stderr, flush=True)
                results[scenario] = best
        finally:
            for server in servers.values():
                server.close()
    scrape = scrape_time(args.functions, 10 if args.quick else 30)
    elapsed = time.monotonic() - started

    header = f"{'scenario':<18}" + "".join(f"{name:>12}" for name in names)
    header += "".join(f"{'vs ' + name:>14}" for name in names[1:])
    print(f"jobs/s, best of {rounds} interleaved round(s), raw driver; {os.cpu_count()} CPUs")
    print(header)
    print("-" * len(header))
    ratios: dict[str, dict[str, float]] = {}
    for scenario, values in results.items():
        line = f"{scenario:<18}" + "".join(f"{values[name]:>12,.0f}" for name in names)
        ratios[scenario] = {name: values["counters"] / values[name] for name in names[1:] if values[name]}
        line += "".join(f"{ratios[scenario].get(name, 0):>14.3f}" for name in names[1:])
        print(line)
    for name in names[1:]:
        mean = statistics.fmean(ratio[name] for ratio in ratios.values() if name in ratio)
        print(f"counters / {name}, mean over scenarios: {mean:.3f} (cost {100 * (1 - mean):+.1f} %)")
    print(
        f"GET /metrics, {args.functions} functions: best {scrape['best_ms']:.1f} ms, "
        f"median {scrape['median_ms']:.1f} ms, {scrape['bytes']:,} bytes"
    )
    print(f"({elapsed:.1f}s)")
    payload = {
        "quick": args.quick,
        "rounds": rounds,
        "baseline": args.baseline,
        "jobs_per_second": results,
        "ratios": ratios,
        "scrape": scrape,
        "functions": args.functions,
        "seconds": round(elapsed, 1),
    }
    print("RESULT " + json.dumps(payload, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
