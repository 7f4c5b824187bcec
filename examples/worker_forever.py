"""A worker that serves forever: ``reverse`` and ``upper`` until SIGTERM/SIGINT (it finishes the job in hand and
exits 0), or, with ``--max-jobs N``, until it has handled N jobs.

    python examples/worker_forever.py 127.0.0.1:4730
    gearworks submit -f reverse hello        # from another shell: olleh
"""

from __future__ import annotations

import argparse

from gearworks import Worker, WorkerJob


def reverse(job: WorkerJob) -> bytes:
    return job.workload[::-1]


def upper(job: WorkerJob) -> str:
    return job.workload.decode().upper()  # a str result is sent as UTF-8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--max-jobs", type=int, help="exit after this many jobs (default: serve forever)")
    args = parser.parse_args()

    worker = Worker(args.servers, client_id="example-worker")
    worker.register("reverse", reverse)
    worker.register("upper", upper)
    print(f"serving {b', '.join(worker.functions).decode()}", flush=True)
    handled = worker.work(max_jobs=args.max_jobs)
    print(f"handled {handled} jobs")


if __name__ == "__main__":
    main()
