"""Graceful drain on SIGTERM: the worker grabs nothing more, finishes the jobs in hand (up to ``drain_timeout``
seconds), then exits 0; nothing is lost and nothing runs twice. Send it SIGTERM (or Ctrl-C) while jobs run.

    python examples/worker_graceful.py 127.0.0.1:4730 &
    gearworks submit -f backup --each-line < hosts.txt &  kill -TERM %1
"""

from __future__ import annotations

import argparse
import threading
import time

from gearworks import Worker, WorkerJob

OUTPUT = threading.Lock()  # handlers run in two threads: one line at a time


def say(line: str) -> None:
    with OUTPUT:
        print(line, flush=True)


def backup(job: WorkerJob) -> bytes:
    name = job.workload.decode()
    say(f"started {name}")
    time.sleep(1.0)  # a job that must not be cut short
    say(f"finished {name}")
    return b"backed up " + job.workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--max-jobs", type=int, help="exit after this many jobs (default: until SIGTERM)")
    args = parser.parse_args()

    worker = Worker(args.servers, concurrency=2, drain_timeout=30)
    worker.register("backup", backup)
    print("serving backup; SIGTERM drains", flush=True)
    handled = worker.work(max_jobs=args.max_jobs)  # SIGTERM/SIGINT: drain, then return
    print(f"drained: {handled} jobs finished, exiting 0")


if __name__ == "__main__":
    main()
