"""Durable queues: background submissions per second with each queue backend, side by side with C gearmand's own
persistent queues, and the time to replay stored jobs at start.

Scenarios (jobs/s; every target restarted empty for each measurement, targets interleaved round by round, medians):
  php pipelined   PHP libgearman client, addTaskBackground + runTasks, 5,000 jobs (1,000 with --quick)
  ours pipelined  gearworks AsyncClient, every submission in flight at once
  one at a time   gearworks Client, one submission, wait for JOB_CREATED, next
Targets: the SQLite queue keeps >= 50% of the memory queue's pipelined rate; Redis and PostgreSQL >= 25%.
Replay: N jobs written straight into each store, then the time from starting ``gearworks serve`` until it accepts
connections (1,000,000 jobs; 100,000 with --quick).
Usage: python bench/durable.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers / tests.datastores start the servers; tests/peers holds the PHP peer

from tests.datastores import postgres_cluster, redis_process  # noqa: E402
from tests.servers import ServerProcess, free_port, gearmand_process, gearworks_process, wait_for_port  # noqa: E402

from gearworks import AsyncClient, Client  # noqa: E402
from gearworks.server.queues.base import StoredJob  # noqa: E402
from gearworks.server.queues.urls import open_store  # noqa: E402

PHP_SUBMIT = ROOT / "tests" / "peers" / "php_submit_background.php"


@dataclass
class Target:
    """A server configuration: ``make()`` returns a fresh, not yet started server whose queue is empty."""

    name: str
    make: Callable[[], ServerProcess]
    reset: Callable[[], None] = lambda: None


def php_pipelined(server: ServerProcess, count: int, function: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["php", str(PHP_SUBMIT), str(server.port), function, str(count), "x" * 100, "1000"],
        check=True,
        timeout=600,
    )
    return count / (time.perf_counter() - start)


def ours_pipelined(server: ServerProcess, count: int, function: str) -> float:
    async def run() -> float:
        async with AsyncClient(server.address) as client:
            start = time.perf_counter()
            jobs = [client.submit(function, b"x" * 100, background=True) for _ in range(count)]
            await client.wait(jobs, timeout=600)
            elapsed = time.perf_counter() - start
            failed = [job for job in jobs if job.error is not None]
            if failed:
                raise RuntimeError(f"{len(failed)} submissions failed: {failed[0].error}")
            return count / elapsed

    return asyncio.run(run())


def one_at_a_time(server: ServerProcess, count: int, function: str) -> float:
    with Client(server.address) as client:
        start = time.perf_counter()
        for _ in range(count):
            client.submit_background(function, b"x" * 100)
        return count / (time.perf_counter() - start)


@contextlib.contextmanager
def targets(tmp: Path) -> Iterator[list[Target]]:
    """Every configuration, with the Redis and PostgreSQL servers they need running for the whole benchmark."""
    redis = redis_process().start()
    redis_port = redis.port
    counter = iter(range(1, 10**9))

    def flush_redis() -> None:
        subprocess.run(["redis-cli", "-p", str(redis_port), "flushall"], check=True, capture_output=True)

    try:
        with postgres_cluster() as start_postgres:
            pg_url = start_postgres()
            pg_port = pg_url.rsplit(":", 1)[1].split("/")[0]
            conninfo = f"host=127.0.0.1 port={pg_port} user=postgres dbname=postgres"

            def drop_tables() -> None:
                subprocess.run(
                    ["psql", pg_url, "-qc", "DROP TABLE IF EXISTS gearworks_jobs; DROP TABLE IF EXISTS queue;"],
                    check=True,
                    capture_output=True,
                )

            def sqlite_file() -> str:
                return str(tmp / f"q{next(counter)}.db")

            yield [
                Target("gearworks memory", gearworks_process),
                Target("gearworks sqlite", lambda: gearworks_process("-q", f"sqlite:///{sqlite_file()}")),
                Target("gearworks redis", lambda: gearworks_process("-q", f"redis://127.0.0.1:{redis_port}/0"),
                       flush_redis),
                Target("gearworks postgres", lambda: gearworks_process("-q", pg_url), drop_tables),
                Target("gearmand builtin", gearmand_process),
                Target("gearmand libsqlite3",
                       lambda: gearmand_process("-q", "libsqlite3", "--libsqlite3-db", sqlite_file())),
                Target("gearmand redis",
                       lambda: gearmand_process("-q", "redis", "--redis-server", "127.0.0.1", "--redis-port",
                                                str(redis_port)),
                       flush_redis),
                Target("gearmand postgres", lambda: gearmand_process("-q", "Postgres", "--libpq-conninfo", conninfo),
                       drop_tables),
            ]  # fmt: skip
    finally:
        redis.close()


def measure(target: Target, scenario: Callable[[ServerProcess, int, str], float], count: int) -> float | None:
    target.reset()
    server = target.make()
    try:
        server.start(timeout=60)
        return scenario(server, count, "bench")
    except (subprocess.CalledProcessError, RuntimeError, OSError, TimeoutError) as exc:
        print(f"  {target.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    finally:
        server.close()


def replay_seconds(url: str, jobs: int) -> float:
    """Write ``jobs`` into the store at ``url`` directly, then time ``gearworks serve -q url`` until it listens."""
    store = open_store(url)
    batch = 20_000
    for first in range(0, jobs, batch):
        store.apply(
            [StoredJob(b"H:r:%d" % n, b"replay", b"", b"x" * 100, 1) for n in range(first, min(jobs, first + batch))],
            [],
        )
    store.close()
    port = free_port()
    start = time.perf_counter()
    server = gearworks_process("-q", url, port=port)
    try:
        server.start(timeout=600)
        wait_for_port("127.0.0.1", port)
        return time.perf_counter() - start
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    args = parser.parse_args()
    pipelined = 1_000 if args.quick else 5_000
    sequential = 200 if args.quick else 1_000
    rounds = 1 if args.quick else 3
    replay_jobs = 100_000 if args.quick else 1_000_000
    scenarios = {
        "php pipelined": (php_pipelined, pipelined),
        "ours pipelined": (ours_pipelined, pipelined),
        "one at a time": (one_at_a_time, sequential),
    }
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-durable-") as tmp, targets(Path(tmp)) as configs:
        for _ in range(rounds):
            for scenario_name, (scenario, count) in scenarios.items():
                for target in configs:
                    if target.name.startswith("gearmand") and scenario_name == "one at a time":
                        count_here = max(50, count // 4)  # gearmand's libsqlite3 queue runs at a few hundred/s
                    else:
                        count_here = count
                    rate = measure(target, scenario, count_here)
                    if rate is not None:
                        results.setdefault(target.name, {}).setdefault(scenario_name, []).append(rate)
        replay: dict[str, float] = {}
        with contextlib.suppress(Exception):
            replay["sqlite"] = replay_seconds(f"sqlite:///{tmp}/replay.db", replay_jobs)
    report(results, replay, replay_jobs, rounds)


def report(results: dict[str, dict[str, list[float]]], replay: dict[str, float], replay_jobs: int, rounds: int) -> None:
    medians = {name: {s: statistics.median(v) for s, v in kinds.items()} for name, kinds in results.items()}
    columns = ["php pipelined", "ours pipelined", "one at a time"]
    print(f"{'jobs/s (median of ' + str(rounds) + ')':24}" + "".join(f"{c:>16}" for c in columns))
    for name, rates in medians.items():
        print(f"{name:24}" + "".join(f"{rates.get(c, float('nan')):16,.0f}" for c in columns))
    memory = medians.get("gearworks memory", {})
    ratios = {}
    for backend, target in (("sqlite", 0.5), ("redis", 0.25), ("postgres", 0.25)):
        ours = medians.get(f"gearworks {backend}", {})
        for column in ("php pipelined", "ours pipelined"):
            if column in ours and column in memory:
                ratio = ours[column] / memory[column]
                ratios[f"{backend}/memory {column}"] = round(ratio, 3)
                print(f"{backend} / memory ({column}): {ratio:.2f} (target >= {target})")
        theirs = medians.get(f"gearmand {'libsqlite3' if backend == 'sqlite' else backend}", {})
        if "php pipelined" in ours and "php pipelined" in theirs:
            ratio = ours["php pipelined"] / theirs["php pipelined"]
            ratios[f"{backend}/gearmand php pipelined"] = round(ratio, 2)
            print(f"{backend}: gearworks / gearmand (php pipelined): {ratio:.1f}x")
    for backend, seconds in replay.items():
        print(f"replay {replay_jobs:,} jobs from {backend}: {seconds:.1f} s ({replay_jobs / seconds:,.0f} jobs/s)")
    print(
        "RESULT "
        + json.dumps({"jobs_per_s": medians, "ratios": ratios, "replay_s": replay, "replay_jobs": replay_jobs})
    )


if __name__ == "__main__":
    main()
