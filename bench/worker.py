"""Worker throughput through the C gearmand: gearworks' workers against PHP (libgearman) and Perl workers.

Two scenarios, each worker set in its own processes, interleaved round by round (medians reported):

- drain: N background jobs are queued first (PHP GearmanClient, addTaskBackground + runTasks), then the workers
  start; the rate is jobs finished per second between the first and the last completion, read from admin
  ``status`` polled every 5 ms.
- serve: the workers are up and registered; a PHP client runs a 5,000-task foreground set (addTask + runTasks) and
  reports how long runTasks took.

Every handler echoes its workload. Usage: python bench/worker.py [--quick] [--uvloop]. Ends with ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gearworks.admin import Admin

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "tests" / "peers"
sys.path.insert(0, str(ROOT))
servers = importlib.import_module("tests.servers")
_functions = itertools.count()


@dataclass(frozen=True)
class Contender:
    """A worker implementation: how to start one process of it, and how many processes to start."""

    name: str
    argv: Callable[[int, str], list[str]]
    processes: int = 1


def gearworks(kind: str, concurrency: int, uvloop: bool = False) -> Callable[[int, str], list[str]]:
    def argv(port: int, function: str) -> list[str]:
        command = [sys.executable, "-m", "tests.peers.gearworks_worker", "--servers", f"127.0.0.1:{port}"]
        command += ["--kind", kind, "--concurrency", str(concurrency), "--function", function]
        return [*command, "--uvloop"] if uvloop else command

    return argv


def php(port: int, function: str) -> list[str]:
    return ["php", str(PEERS / "php_worker.php"), str(port), function]


def perl(port: int, function: str) -> list[str]:
    return ["perl", str(PEERS / "perl_worker.pl"), str(port), function]


def raw(port: int, function: str) -> list[str]:
    """bench/server.py's raw-socket echo worker: the protocol in a plain loop, no worker library (the floor a Python
    worker can reach doing one round trip per job)."""
    return [sys.executable, str(ROOT / "bench" / "server.py"), "--raw-worker", "127.0.0.1", str(port), function]


def contenders(uvloop: bool) -> list[Contender]:
    chosen = [
        Contender("gearworks async c1", gearworks("async", 1)),
        Contender("gearworks async c16", gearworks("async", 16)),
        Contender("gearworks async c1 x2", gearworks("async", 1), 2),
        Contender("gearworks async c16 x2", gearworks("async", 16), 2),
        Contender("gearworks blocking", gearworks("blocking", 1)),
        Contender("gearworks blocking x2", gearworks("blocking", 1), 2),
        Contender("gearworks blocking c4 threads", gearworks("blocking", 4)),
        Contender("PHP libgearman", php),
        Contender("PHP libgearman x2", php, 2),
        Contender("Perl Gearman::Worker", perl),
        Contender("raw Python socket (floor)", raw),
    ]
    if uvloop:
        chosen.insert(2, Contender("gearworks async c16 uvloop", gearworks("async", 16, uvloop=True)))
    return chosen


def start(contender: Contender, port: int, function: str) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(contender.argv(port, function), cwd=ROOT, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        for _ in range(contender.processes)
    ]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait(10)


def total_jobs(admin: Admin, function: str) -> tuple[int, int]:
    """(jobs queued + running, registered workers) of ``function``."""
    for row in admin.status():
        if row.function == function.encode():
            return row.total, row.workers
    return 0, 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.005)
    return time.perf_counter()


def drain(contender: Contender, port: int, admin: Admin, jobs: int) -> float:
    function = f"drain{next(_functions)}"
    subprocess.run(["php", str(PEERS / "php_submit_background.php"), str(port), function, str(jobs)], check=True)
    processes = start(contender, port, function)
    try:
        first: list[int] = []

        def started() -> bool:
            total = total_jobs(admin, function)[0]
            if total < jobs:
                first.append(total)
                return True
            return False

        began = wait_until(started, 60, f"{contender.name} took no job")
        ended = wait_until(lambda: total_jobs(admin, function)[0] == 0, 300, f"{contender.name} did not drain")
    finally:
        stop(processes)
    return first[0] / (ended - began)


def serve(contender: Contender, port: int, admin: Admin, tasks: int) -> float:
    function = f"serve{next(_functions)}"
    processes = start(contender, port, function)
    try:
        wait_until(lambda: total_jobs(admin, function)[1] >= contender.processes, 30, f"{contender.name} not ready")
        done = subprocess.run(
            ["php", str(PEERS / "php_client_tasks.php"), str(port), function, str(tasks)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        stop(processes)
    return tasks / float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds (under a minute)")
    parser.add_argument("--uvloop", action="store_true", help="add an async worker on uvloop")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--jobs", type=int, help="background jobs to drain (default 10,000)")
    parser.add_argument("--tasks", type=int, default=5_000, help="foreground tasks in the served set")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    jobs = args.jobs or 10_000
    field = contenders(args.uvloop)
    results: dict[str, dict[str, list[float]]] = {c.name: {"drain": [], "serve": []} for c in field}
    server = servers.gearmand_process("-t", "4")
    # No per-job log lines.
    server.argv_template = [arg for arg in server.argv_template if arg not in ("--verbose", "INFO")]
    with servers.running(server), Admin(server.address) as admin:
        for _ in range(rounds):
            for contender in field:
                results[contender.name]["drain"].append(drain(contender, server.port, admin, jobs))
                results[contender.name]["serve"].append(serve(contender, server.port, admin, args.tasks))
    report(results, rounds, jobs, args.tasks)


def report(results: dict[str, dict[str, list[float]]], rounds: int, jobs: int, tasks: int) -> None:
    medians = {
        name: {kind: statistics.median(rates) for kind, rates in kinds.items()} for name, kinds in results.items()
    }
    php_drain = medians["PHP libgearman"]["drain"]
    perl_drain = medians["Perl Gearman::Worker"]["drain"]
    cpus = os.cpu_count()
    print(f"C gearmand -t4, {cpus} CPUs; drain {jobs:,} background jobs; serve a {tasks:,}-task set; {rounds} round(s)")
    print(f"{'worker':<30} {'drain jobs/s':>13} {'serve jobs/s':>13} {'drain/PHP':>10} {'drain/Perl':>11}")
    for name, rates in medians.items():
        print(
            f"{name:<30} {rates['drain']:>13,.0f} {rates['serve']:>13,.0f} "
            f"{rates['drain'] / php_drain:>10.2f} {rates['drain'] / perl_drain:>11.2f}"
        )
    best_async = max(
        rates["drain"] for name, rates in medians.items() if name.startswith("gearworks async") and "x2" not in name
    )
    blocking = medians["gearworks blocking"]["drain"]
    async_c1 = medians["gearworks async c1"]["drain"]
    floor = medians["raw Python socket (floor)"]["drain"]
    targets = {
        "async_c1_vs_php": async_c1 / php_drain,
        "floor_vs_php": floor / php_drain,
        "async_vs_php": best_async / php_drain,
        "async_vs_perl": best_async / perl_drain,
        "blocking_vs_perl": blocking / perl_drain,
    }
    print(
        f"targets: best single async worker {targets['async_vs_php']:.2f}x PHP (>= 1), "
        f"{targets['async_vs_perl']:.2f}x Perl (>= 4); blocking {targets['blocking_vs_perl']:.2f}x Perl (>= 1)"
    )
    print(
        f"async c1 drain {targets['async_c1_vs_php']:.2f}x PHP (>= 1); the raw socket floor "
        f"{targets['floor_vs_php']:.2f}x PHP, async c1 {async_c1 / floor:.2f}x the floor"
    )
    print("RESULT " + json.dumps({"jobs_per_s": medians, "targets": targets, "rounds": rounds, "jobs": jobs}))


if __name__ == "__main__":
    main()
