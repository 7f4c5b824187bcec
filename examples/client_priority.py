"""Priority queue: low, normal and high background jobs queued while no worker runs; one worker then takes
every high job first, then normal, then low (each level first in, first out).

    python examples/client_priority.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import threading
from typing import Literal

from gearworks import Client, Worker, WorkerJob

SUBMISSIONS: list[tuple[Literal["low", "normal", "high"], str]] = [
    ("low", "low-1"),
    ("normal", "normal-1"),
    ("high", "high-1"),
    ("low", "low-2"),
    ("high", "high-2"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()

    with Client(args.servers) as client:
        for priority, name in SUBMISSIONS:
            client.submit_background("render", name, priority=priority)
    print("submitted: " + " ".join(name for _, name in SUBMISSIONS))

    order: list[str] = []

    def render(job: WorkerJob) -> bytes:
        order.append(job.workload.decode())
        return b""

    worker = Worker(args.servers)  # concurrency 1: jobs are taken one at a time, in the server's order
    worker.register("render", render)
    guard = threading.Timer(30, worker.stop)
    guard.start()
    worker.work(max_jobs=len(SUBMISSIONS))
    guard.cancel()
    print("run order: " + " ".join(order))


if __name__ == "__main__":
    main()
