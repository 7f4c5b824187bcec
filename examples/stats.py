"""Monitoring with ``stats`` (gearworks' server only): counters since start and p50/p99 latencies per function, read
after a workload where some jobs fail (a raising handler ends its job with WORK_EXCEPTION, counted apart).

    python examples/stats.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import threading
import time

from gearworks import Admin, Client, JobFailed, Worker, WorkerJob

JOBS = 30


def resize(job: WorkerJob) -> bytes:
    time.sleep(0.01)
    if job.workload.endswith(b"7"):  # every tenth image is broken
        raise ValueError("not an image")
    return b"resized " + job.workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port (default the first of $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()
    worker = Worker(args.servers, concurrency=4)
    worker.register("stats-resize", resize)
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Client(args.servers) as client:
            tasks = client.task_set()
            for n in range(JOBS):
                tasks.add("stats-resize", f"img{n}")
            tasks.wait(timeout=60)
            failed = sum(isinstance(result, JobFailed) for result in tasks.results())
        with Admin(args.servers) as admin:
            (row,) = admin.stats("stats-resize")
        print(f"client saw {JOBS - failed} done, {failed} failed")
        print(
            f"server counted {row.submitted} submitted, {row.completed} completed, {row.exceptions} ended by an "
            f"exception, {row.failed} by WORK_FAIL, {row.workers} worker(s) now"
        )
        p50, p99 = row.run_p50 or 0.0, row.run_p99 or 0.0  # None only before a function's first job
        print(f"run time p50 >= 10 ms: {p50 >= 0.01}; p99 >= p50: {p99 >= p50}")
    finally:
        worker.stop()
        thread.join(30)


if __name__ == "__main__":
    main()
