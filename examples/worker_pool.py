"""A concurrency-capped pool: however many jobs are queued, at most ``--concurrency`` run at once. The worker
grabs a job only when a slot is free, so the rest stay on the server for other workers.

    python examples/worker_pool.py 127.0.0.1:4730 --concurrency 4 --max-jobs 12
"""

from __future__ import annotations

import argparse
import asyncio

from gearworks import AsyncWorker, WorkerJob


async def run(servers: str | None, concurrency: int, max_jobs: int | None) -> None:
    running = peak = 0

    async def resize(job: WorkerJob) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.2)
            return b"resized " + job.workload
        finally:
            running -= 1

    worker = AsyncWorker(servers, concurrency=concurrency)
    worker.register("resize", resize)
    print(f"serving resize, {concurrency} at a time", flush=True)
    handled = await worker.work(max_jobs=max_jobs)
    print(f"handled {handled} jobs, at most {peak} at once")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-jobs", type=int, help="exit after this many jobs (default: serve forever)")
    args = parser.parse_args()
    asyncio.run(run(args.servers, args.concurrency, args.max_jobs))


if __name__ == "__main__":
    main()
