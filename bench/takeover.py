"""Cluster mode: what losing a node costs, and what sharing a store costs.

Kills: three ``gearworks serve --cluster`` nodes on one store (lease interval 0.2 s, timeout 1 s), each with 2,000
background jobs queued and a raw worker; one node is killed with SIGKILL while the workers run and the other nodes
take 1,000 more submissions each, then restarted for the next round (the victim rotates). Per kill: the takeover
time (kill → first of the dead node's jobs handed out by a peer; the floor is twice the lease timeout), acknowledged
jobs lost (must be 0) and jobs run twice (allowed only for jobs the dead node had handed out). 20 kills per backend
(3 with --quick).
Rates: pipelined background submissions (gearworks AsyncClient, every one in flight at once) acknowledged per second
by one single-server durable node, one cluster node, and three cluster nodes (one client each, all at once), on the
same store; medians of interleaved rounds. Target: one cluster node within 10 % of the single-server rate.
Usage: python bench/takeover.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers / tests.datastores / tests.cluster_farm start the servers

from tests.cluster_farm import cluster_node, storm_and_kill  # noqa: E402
from tests.datastores import postgres_cluster, redis_process  # noqa: E402
from tests.servers import ServerProcess, gearworks_process  # noqa: E402

from gearworks import AsyncClient  # noqa: E402

_names = itertools.count()


async def _pipelined(address: str, count: int) -> None:
    async with AsyncClient(address) as client:
        jobs = [client.submit("bench", b"x" * 100, background=True) for _ in range(count)]
        await client.wait(jobs, timeout=600)
        failed = [job for job in jobs if job.error is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} submissions failed: {failed[0].error}")


def spread_rate(nodes: list[ServerProcess], count: int) -> float:
    """Jobs acknowledged per second with ``count`` submissions split over ``nodes``, all in flight at once."""

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_pipelined(node.address, count // len(nodes)) for node in nodes))
        return count // len(nodes) * len(nodes) / (time.perf_counter() - start)

    return asyncio.run(run())


@contextlib.contextmanager
def started(nodes: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    try:
        for node in nodes:
            node.start(timeout=60)
        yield nodes
    finally:
        for node in nodes:
            node.close()


def farms(url: str, namespace: str) -> dict[str, Callable[[], list[ServerProcess]]]:
    """Fresh, empty configurations to measure (each call: a new table or key prefix)."""

    def single() -> list[ServerProcess]:
        return [gearworks_process("-q", url, namespace, f"single_{next(_names)}")]

    def cluster(size: int) -> Callable[[], list[ServerProcess]]:
        def make() -> list[ServerProcess]:
            name = f"bench{next(_names)}"
            return [cluster_node(url, name, f"n{index}") for index in range(size)]

        return make

    return {"single server": single, "cluster, 1 node": cluster(1), "cluster, 3 nodes": cluster(3)}


def rates(url: str, namespace: str, count: int, rounds: int) -> dict[str, float]:
    measured: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, make in farms(url, namespace).items():
            with started(make()) as nodes:
                measured.setdefault(name, []).append(spread_rate(nodes, count))
    return {name: statistics.median(values) for name, values in measured.items()}


def kills(url: str, count: int) -> list[dict[str, float | int | None]]:
    rows: list[dict[str, float | int | None]] = []
    name = f"kills{next(_names)}"
    with started([cluster_node(url, name, f"n{index}") for index in range(3)]) as nodes:
        for round_ in range(count):
            victim = round_ % len(nodes)
            outcome = storm_and_kill(nodes, victim=victim, tag=f"r{round_}", backlog=2000)
            takeover = outcome.takeover_s
            rows.append({
                "takeover_s": None if takeover is None else round(takeover, 3),
                "acked": len(outcome.acked),
                "lost": len(outcome.lost),
                "duplicates": outcome.duplicates,
                "unexplained_duplicates": len(outcome.unexplained_duplicates),
            })  # fmt: skip
            shown = "-" if takeover is None else f"{takeover:.2f} s"
            print(f"  kill {round_ + 1:2}: node {victim}, takeover {shown}, {rows[-1]['acked']} acked, "
                  f"{rows[-1]['lost']} lost, {rows[-1]['duplicates']} duplicates", flush=True)  # fmt: skip
            nodes[victim].start(timeout=60)
    return rows


@contextlib.contextmanager
def stores() -> Iterator[dict[str, tuple[str, str]]]:
    """Each backend's URL and its namespace option, running for the whole benchmark."""
    redis = redis_process().start()
    try:
        with postgres_cluster() as start_postgres:
            yield {
                "postgres": (start_postgres(), "--libpq-table"),
                "redis": (f"redis://127.0.0.1:{redis.port}/0", "--redis-prefix"),
            }
    finally:
        redis.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 kills per backend and one round of rates")
    args = parser.parse_args()
    kill_count = 3 if args.quick else 20
    count = 3_000 if args.quick else 15_000
    rounds = 1 if args.quick else 3
    result: dict[str, dict[str, object]] = {}
    with stores() as backends:
        for backend, (url, namespace) in backends.items():
            print(f"{backend}: rates ({count:,} pipelined submissions, median of {rounds})", flush=True)
            measured = rates(url, namespace, count, rounds)
            for name, rate in measured.items():
                print(f"  {name:18} {rate:10,.0f} jobs/s")
            cost = 1 - measured["cluster, 1 node"] / measured["single server"]
            print(f"  shared-store cost, 1 node vs single server: {cost:.1%} (target < 10 %)")
            print(f"{backend}: {kill_count} kills", flush=True)
            rows = kills(url, kill_count)
            times = [float(row["takeover_s"]) for row in rows if row["takeover_s"] is not None]
            summary = {
                "kills": len(rows),
                "takeover_s_median": statistics.median(times) if times else None,
                "takeover_s_max": max(times) if times else None,
                "lost": sum(int(row["lost"] or 0) for row in rows),
                "duplicates": sum(int(row["duplicates"] or 0) for row in rows),
                "unexplained_duplicates": sum(int(row["unexplained_duplicates"] or 0) for row in rows),
                "acked": sum(int(row["acked"] or 0) for row in rows),
            }
            print(f"  takeover median {summary['takeover_s_median']} s, max {summary['takeover_s_max']} s; "
                  f"{summary['lost']} lost, {summary['duplicates']} duplicates "
                  f"({summary['unexplained_duplicates']} not explained by a hand-out before the kill) "
                  f"of {summary['acked']:,} acknowledged")  # fmt: skip
            result[backend] = {"rates": measured, "shared_cost": round(cost, 3), **summary}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
