"""Clients side by side against one C gearmand: gearworks' AsyncClient and Client against Perl's Gearman::Client
and PHP's libgearman client, in one run.

Scenarios, in jobs/s (medians of interleaved rounds): sequential foreground round trips, one 5,000-task set,
10,000 pipelined background submissions (one ``submit`` each; and gearworks' batch API, ``submit_background_many``,
compared with PHP's pipelined background row), 1 MiB foreground round trips. gearmand runs with -t 4 (each
background run on a fresh one, as queued jobs slow it down; the order of clients rotates per round); one
PHP/libgearman worker echoes the small jobs, one Perl Gearman::Worker echoes the 1 MiB ones (PHP's client moves
1 MiB payloads slowly, so it runs fewer of them). The Perl client has no pipelining: its background row is
sequential ``dispatch_background``. Ends with one ``RESULT {json}`` line.
Usage: python bench/client.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers starts gearmand; tests/peers holds the PHP and Perl peers

from tests.servers import gearmand_process  # noqa: E402

from gearworks.client import AsyncClient, Client, Job  # noqa: E402
from gearworks.protocol import Decoder, PacketType, encode  # noqa: E402

PEERS = ROOT / "tests" / "peers"
SMALL = b"x" * 32
BIG = b"\0gearworks" * (1024 * 1024 // 10) + b"\0" * (1024 * 1024 % 10)
SCENARIOS = ("sequential", "task set", "background", "background batch", "1 MiB")
FUNCTIONS = {
    "sequential": "bench_echo",
    "task set": "bench_echo",
    "background": "bench_sink",
    "background batch": "bench_sink",
    "1 MiB": "bench_big",
}
PEER_MODES = {"sequential": "seq", "task set": "pipe", "background": "bg", "1 MiB": "seq"}
"""What the peers run; they have no batch API (PHP's pipelined ``bg`` is the batch rows' reference)."""


def counts(quick: bool) -> dict[str, int]:
    return {
        "sequential": 500 if quick else 5000,
        "task set": 5000,
        "background": 10_000,
        "background batch": 10_000,
        "1 MiB": 30 if quick else 200,
    }


def peer_counts(quick: bool) -> dict[str, dict[str, int]]:
    """Fewer jobs where a reference client is slow, so --quick stays under a minute (rates are per job)."""
    base = counts(quick)
    return {
        "perl": {**base, "background": 1000 if quick else 10_000},
        "php": {**base, "1 MiB": 3 if quick else 10},
    }


async def run_async(scenario: str, count: int, port: int) -> float:
    async with AsyncClient(f"127.0.0.1:{port}") as client:
        await client.echo(b"warm")
        function = FUNCTIONS[scenario]
        start = time.perf_counter()
        if scenario in ("sequential", "1 MiB"):
            payload = BIG if scenario == "1 MiB" else SMALL
            for _ in range(count):
                await client.do(function, payload)
        elif scenario == "task set":
            tasks = client.task_set()
            for _ in range(count):
                tasks.add(function, SMALL)
            check(await tasks.wait(120))
        elif scenario == "background batch":
            handles = await client.submit_background_many(function, [SMALL] * count)
            assert len(handles) == count
        else:
            check(await client.wait([client.submit(function, SMALL, background=True) for _ in range(count)], 120))
        return count / (time.perf_counter() - start)


def run_blocking(scenario: str, count: int, port: int) -> float:
    with Client(f"127.0.0.1:{port}") as client:
        client.echo(b"warm")
        function = FUNCTIONS[scenario]
        start = time.perf_counter()
        if scenario in ("sequential", "1 MiB"):
            payload = BIG if scenario == "1 MiB" else SMALL
            for _ in range(count):
                client.do(function, payload)
        elif scenario == "task set":
            tasks = client.task_set()
            for _ in range(count):
                tasks.add(function, SMALL)
            check(tasks.wait(120))
        elif scenario == "background batch":
            handles = client.submit_background_many(function, [SMALL] * count)
            assert len(handles) == count
        else:
            check(client.wait([client.submit(function, SMALL, background=True) for _ in range(count)], 120))
        return count / (time.perf_counter() - start)


def check(jobs: list[Job]) -> None:
    failed = [job for job in jobs if job.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} jobs failed: {failed[0].error}")


def run_floor(count: int, port: int) -> float:
    """Sequential round trips with no client library: one socket, SUBMIT_JOB out, read to WORK_COMPLETE. What the
    server and worker allow on this machine, whatever the client."""
    request = encode(PacketType.SUBMIT_JOB, (FUNCTIONS["sequential"].encode(), b"", SMALL))
    decoder = Decoder()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        for _ in range(count):
            sock.sendall(request)
            done = False
            while not done:
                done = any(
                    getattr(item, "type", None) is PacketType.WORK_COMPLETE for item in decoder.feed(sock.recv(65536))
                )
        return count / (time.perf_counter() - start)


def run_peer(kind: str, scenario: str, count: int, port: int) -> float:
    size = len(BIG) if scenario == "1 MiB" else len(SMALL)
    script = PEERS / ("perl_client.pl" if kind == "perl" else "php_client.php")
    argv = [kind, str(script), "127.0.0.1", str(port), PEER_MODES[scenario], FUNCTIONS[scenario], str(count), str(size)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {scenario} failed: {done.stdout} {done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return count / float(report["seconds"])


def uvloop_runner() -> Callable[[Coroutine[Any, Any, float]], float] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    args = parser.parse_args()
    rounds = 5 if args.quick else 9  # medians of several rounds: the figures swing on a busy machine
    sizes, peer_sizes = counts(args.quick), peer_counts(args.quick)
    server = gearmand_process("-t", "4").start()
    workers = [
        subprocess.Popen(["php", str(PEERS / "php_worker.php"), str(server.port), "bench_echo"]),
        subprocess.Popen(["perl", str(PEERS / "perl_worker.pl"), str(server.port), "bench_big"]),
    ]
    port = server.port
    uv = uvloop_runner()
    clients: dict[str, Callable[[str, int, int], float]] = {
        "async": lambda scenario, n, port: asyncio.run(run_async(scenario, n, port)),
        "blocking": run_blocking,
        "perl": lambda scenario, n, port: run_peer("perl", scenario, n, port),
        "php": lambda scenario, n, port: run_peer("php", scenario, n, port),
    }
    if uv is not None:
        clients["async+uvloop"] = lambda scenario, n, port: uv(run_async(scenario, n, port))
    samples: dict[str, dict[str, list[float]]] = {s: {c: [] for c in clients} for s in SCENARIOS}
    floor: list[float] = []
    try:
        with Client(server.address) as warm:  # both workers registered before anything is timed
            warm.do("bench_echo", b"warm", timeout=30)
            warm.do("bench_big", b"warm", timeout=30)
        names = list(clients)
        for index in range(rounds):
            floor.append(run_floor(sizes["sequential"], port))
            order = names[index % len(names) :] + names[: index % len(names)]
            scenarios = list(SCENARIOS)
            if index % 2:
                scenarios.reverse()
            for scenario in scenarios:
                for name in order:
                    run = clients[name]
                    if scenario not in PEER_MODES and name in peer_sizes:
                        continue  # no batch API in the peers
                    count = peer_sizes[name][scenario] if name in peer_sizes else sizes[scenario]
                    if FUNCTIONS[scenario] != "bench_sink":
                        samples[scenario][name].append(run(scenario, count, port))
                        continue
                    # Background jobs stay queued (no worker runs them) and gearmand slows as its queue grows: each
                    # background run gets a fresh gearmand of its own.
                    sink = gearmand_process("-t", "4").start()
                    try:
                        samples[scenario][name].append(run(scenario, count, sink.port))
                    finally:
                        sink.close()
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(10)
        server.close()
    report(samples, statistics.median(floor), rounds)


def report(samples: dict[str, dict[str, list[float]]], floor: float, rounds: int) -> None:
    medians = {s: {c: statistics.median(v) for c, v in per.items() if v} for s, per in samples.items()}
    names = list(next(iter(medians.values())))
    print(f"{'jobs/s (median of ' + str(rounds) + ')':26}" + "".join(f"{name:>14}" for name in names))
    for scenario, row in medians.items():
        print(f"{scenario:26}" + "".join(f"{row[name]:14,.0f}" if name in row else f"{'-':>14}" for name in names))
    floor_vs_php = floor / medians["sequential"]["php"]
    print(f"{'sequential floor (raw socket, no client library)':50}{floor:10,.0f}  ({floor_vs_php:.2f}x php)")
    best = {s: max(row.get("async", 0.0), row.get("async+uvloop", 0.0)) for s, row in medians.items()}
    async_seq = medians["sequential"]["async"]
    uvloop_seq = medians["sequential"].get("async+uvloop")
    targets = {
        "async (no uvloop) >= php sequential": async_seq / medians["sequential"]["php"],
        **(
            {"async+uvloop >= 1.2x php sequential": uvloop_seq / (1.2 * medians["sequential"]["php"])}
            if uvloop_seq is not None
            else {}
        ),
        "async >= 3x perl sequential": best["sequential"] / (3 * medians["sequential"]["perl"]),
        "async >= 2x php task set": best["task set"] / (2 * medians["task set"]["php"]),
        "async >= php background": best["background"] / medians["background"]["php"],
        "async batch >= 4x php background": best["background batch"] / (4 * medians["background"]["php"]),
        "blocking batch >= php background": medians["background batch"]["blocking"] / medians["background"]["php"],
        "async >= perl 1 MiB": best["1 MiB"] / medians["1 MiB"]["perl"],
        **{
            f"blocking >= perl {scenario}": medians[scenario]["blocking"] / medians[scenario]["perl"]
            for scenario in SCENARIOS
            if scenario in PEER_MODES
        },
        **{
            f"blocking >= php {scenario}": medians[scenario]["blocking"] / medians[scenario]["php"]
            for scenario in SCENARIOS
            if scenario in PEER_MODES
        },
    }
    print()
    print(f"{'target (ratio to target)':38}{'ratio':>8}  met")
    for name, ratio in targets.items():
        print(f"{name:38}{ratio:8.2f}  {'yes' if ratio >= 1 else 'NO'}")
    result = {
        "jobs_per_s": {s: {c: round(v) for c, v in row.items()} for s, row in medians.items()},
        "targets": {name: {"ratio": round(ratio, 2), "met": ratio >= 1} for name, ratio in targets.items()},
        "sequential_floor_jobs_per_s": round(floor),
        "sequential_floor_vs_php": round(floor_vs_php, 2),
        "rounds": rounds,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
