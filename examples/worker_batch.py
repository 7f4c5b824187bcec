"""A drain-and-exit batch consumer (EV::Gearman's ``grab_job`` loop): queue a batch of background jobs, then a
worker with ``work(burst=True)`` runs every one and returns once no server has a job left; ``grab_one()`` then
returns None at once. Run it from cron or a CI step: it never waits for jobs that are not there.

    python examples/worker_batch.py 127.0.0.1:4730 --jobs 20
"""

from __future__ import annotations

import argparse
import time

from gearworks import Client, Worker, WorkerJob


def thumbnail(job: WorkerJob) -> bytes:
    return b"thumbnail of " + job.workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--jobs", type=int, default=20, help="background jobs to queue first")
    args = parser.parse_args()

    with Client(args.servers) as client:
        for n in range(args.jobs):
            client.submit_background("thumbnail", f"photo-{n}.jpg")
    print(f"queued {args.jobs} jobs")

    done: list[bytes] = []
    worker = Worker(args.servers, concurrency=4, on_job_end=lambda job, outcome: done.append(job.workload))
    worker.register("thumbnail", thumbnail)
    started = time.monotonic()
    handled = worker.work(burst=True)  # returns when every server answered NO_JOB and nothing runs
    print(f"drained: {handled} jobs in {time.monotonic() - started:.1f}s, {len(set(done))} distinct photos")
    print(f"grab_one on the empty queue: {worker.grab_one()}")


if __name__ == "__main__":
    main()
