"""Async handlers: coroutine functions run as tasks on one event loop, so a worker waiting on I/O (here a sleep)
serves many jobs at once; they report progress while they run.

    python examples/worker_async.py 127.0.0.1:4730 --max-jobs 10
"""

from __future__ import annotations

import argparse
import asyncio

from gearworks import AsyncWorker, WorkerJob


async def fetch(job: WorkerJob) -> bytes:
    for step in range(1, 5):
        await asyncio.sleep(0.05)  # stands in for a database query or an HTTP call
        job.status(step, 4)
    return b"fetched " + job.workload


def checksum(job: WorkerJob) -> str:
    # A plain function runs inline on the loop: keep it short (or hand it to an executor).
    return f"{sum(job.workload) % 65536:04x}"


async def run(servers: str | None, max_jobs: int | None) -> None:
    worker = AsyncWorker(servers, concurrency=32)
    worker.register("fetch", fetch)
    worker.register("checksum", checksum)
    print("serving fetch, checksum", flush=True)
    handled = await worker.work(max_jobs=max_jobs)
    print(f"handled {handled} jobs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--max-jobs", type=int, help="exit after this many jobs (default: serve forever)")
    args = parser.parse_args()
    asyncio.run(run(args.servers, args.max_jobs))


if __name__ == "__main__":
    main()
