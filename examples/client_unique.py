"""Unique-key coalescing: three clients ask for the same report; the server runs it once and answers all three.
Status by unique key (GET_STATUS_UNIQUE) shows the job running and how many clients wait on it.

    python examples/client_unique.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import asyncio

from gearworks import AsyncClient, AsyncWorker, WorkerJob

CLIENTS = 3


async def run(servers: str | None) -> None:
    release = asyncio.Event()
    runs = 0

    async def report(job: WorkerJob) -> bytes:
        nonlocal runs
        runs += 1
        job.status(1, 2)
        await release.wait()  # hold the job so the status below sees it running
        return b"report for " + job.workload

    worker = AsyncWorker(servers, concurrency=CLIENTS)
    worker.register("report", report)
    serving = asyncio.create_task(worker.work(handle_signals=False))
    clients = [AsyncClient(servers) for _ in range(CLIENTS)]
    try:
        jobs = [client.submit("report", "2026-Q4", unique="report-2026-Q4") for client in clients]
        async with AsyncClient(servers) as observer:
            for _ in range(500):
                status = await observer.get_status_unique("report-2026-Q4")
                # The worker reports 1/2 as it starts: wait for that too, not just for the job to be running.
                if status.running and status.client_count == CLIENTS and status.denominator == 2:
                    break
                await asyncio.sleep(0.01)
            print(
                f"status by unique: known={status.known} running={status.running} "
                f"progress={status.numerator}/{status.denominator} clients waiting={status.client_count}"
            )
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*jobs), 30)
        print(f"{len(results)} clients got {results[0].decode()!r}; the worker ran it {runs} time(s)")
    finally:
        for client in clients:
            await client.close()
        worker.stop()
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()
    asyncio.run(run(args.servers))


if __name__ == "__main__":
    main()
