"""Exceptions in handlers: a raise becomes WORK_EXCEPTION (its message, for clients that asked for exceptions)
and WORK_FAIL; ``job.fail()`` fails quietly; the worker carries on serving either way.

    python examples/worker_exceptions.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import logging
import threading

from gearworks import Client, JobException, JobFailed, Worker, WorkerJob


def parse(job: WorkerJob) -> bytes:
    if not job.workload.isdigit():
        raise ValueError(f"not a number: {job.workload.decode()}")
    return str(int(job.workload) * 2).encode()


def lookup(job: WorkerJob) -> bytes:
    if job.workload != b"known":
        job.fail()  # ends the job as failed; the return value is then ignored
    return b"found"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()
    # The worker logs each raise with its traceback (logger "gearworks.worker"); keep this demo's output short.
    logging.getLogger("gearworks.worker").setLevel(logging.CRITICAL)

    worker = Worker(args.servers)
    worker.register("parse", parse)
    worker.register("lookup", lookup)
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Client(args.servers, exceptions=True) as client:
            for function, workload in [("parse", "21"), ("parse", "twenty"), ("lookup", "unknown"), ("parse", "4")]:
                try:
                    print(f"{function}({workload}) = {client.do(function, workload, timeout=10).decode()}")
                except JobException as exc:
                    print(f"{function}({workload}) raised on the worker: {exc.data.decode()}")
                except JobFailed:
                    print(f"{function}({workload}) failed")
    finally:
        worker.stop()
        thread.join()


if __name__ == "__main__":
    main()
