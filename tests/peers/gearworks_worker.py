"""gearworks' worker as a separate process, for signal tests and benchmarks.

Serves FUNCTION: appends ``start HANDLE`` / ``done HANDLE`` lines to --log (when given), sleeps --sleep seconds, and
returns the workload. Exits 0 after SIGTERM/SIGINT (drain) or --max-jobs jobs.
Usage: python -m tests.peers.gearworks_worker --servers 127.0.0.1:4730 [--kind async|blocking] [--concurrency N]
       [--function F] [--sleep S] [--log FILE] [--max-jobs N] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from gearworks.worker import AsyncWorker, Worker, WorkerJob


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", required=True)
    parser.add_argument("--kind", choices=["async", "blocking"], default="async")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--function", default="work")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--max-jobs", type=int)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--grab", choices=["job", "uniq", "all"], default="uniq")
    args = parser.parse_args()
    log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT) if args.log else None

    def note(what: str, job: WorkerJob) -> None:
        if log_fd is not None:
            os.write(log_fd, f"{what} {job.handle.decode()}\n".encode())

    settings = {"concurrency": args.concurrency, "grab": args.grab, "client_id": f"peer-{os.getpid()}"}
    if args.kind == "async":
        worker = AsyncWorker(args.servers, **settings)

        async def handle_async(job: WorkerJob) -> bytes:
            note("start", job)
            await asyncio.sleep(args.sleep)
            note("done", job)
            return job.workload

        def handle_fast(job: WorkerJob) -> bytes:
            return job.workload

        worker.register(args.function, handle_async if args.sleep or log_fd is not None else handle_fast)
        if args.uvloop:
            import uvloop

            handled = uvloop.run(worker.work(max_jobs=args.max_jobs))
        else:
            handled = asyncio.run(worker.work(max_jobs=args.max_jobs))
    else:
        blocking = Worker(args.servers, **settings)

        @blocking.register(args.function)
        def handle(job: WorkerJob) -> bytes:
            note("start", job)
            if args.sleep:
                time.sleep(args.sleep)
            note("done", job)
            return job.workload

        handled = blocking.work(max_jobs=args.max_jobs)
    print(f"handled {handled}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
