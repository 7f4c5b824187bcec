"""Pipelined submissions: 1,000 foreground jobs in flight at once on one connection, results matched by handle.

python examples/client_pipeline.py 127.0.0.1:4730 --jobs 1000
"""

from __future__ import annotations

import argparse
import asyncio
import time

from gearworks import AsyncClient, AsyncWorker, WorkerJob


def reverse(job: WorkerJob) -> bytes:
    return job.workload[::-1]


async def run(servers: str | None, count: int) -> None:
    worker = AsyncWorker(servers, concurrency=16)
    worker.register("reverse", reverse)
    serving = asyncio.create_task(worker.work(handle_signals=False))
    try:
        async with AsyncClient(servers) as client:
            started = time.perf_counter()
            # submit() sends nothing yet and waits for nothing: every job goes out in one write, replies stream back.
            jobs = [client.submit("reverse", f"job {n}") for n in range(count)]
            await client.wait(jobs, timeout=60)
            elapsed = time.perf_counter() - started
        correct = sum(job.result() == f"job {n}".encode()[::-1] for n, job in enumerate(jobs))
        print(f"{correct} of {count} results correct, {count / elapsed:,.0f} jobs/s")
    finally:
        worker.stop()
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.servers, args.jobs))


if __name__ == "__main__":
    main()
