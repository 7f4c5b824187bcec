"""Retry with backoff: a flaky job is resubmitted after a delay that doubles per attempt (``retry_count``,
``retry_delay``, ``retry_delay_max``), and ``on_retry`` reports each attempt.

    python examples/client_retry.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time

from gearworks import Client, Worker, WorkerJob

attempts: list[float] = []


def flaky(job: WorkerJob) -> bytes:
    attempts.append(time.monotonic())
    if len(attempts) < 3:
        raise RuntimeError("the upstream service is still warming up")
    return b"fetched " + job.workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()
    worker = Worker(args.servers)
    worker.register("fetch", flaky)
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Client(args.servers, retry_delay=0.2, retry_delay_max=1.0) as client:
            retries: list[int] = []
            result = client.do("fetch", "report.csv", retry_count=3, timeout=30, on_retry=retries.append)
        gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(attempts)]
        print(f"{result.decode()} after {len(attempts)} attempts; retries {retries}; waited at least {gaps} s")
    finally:
        worker.stop()
        thread.join(30)


if __name__ == "__main__":
    main()
