"""Error handling: what each way a job can go wrong raises, all under ``gearworks.GearworksError``.

python examples/client_errors.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import threading
import time

from gearworks import (
    Client,
    GearworksError,
    JobException,
    JobFailed,
    JobTimeout,
    NoServerAvailable,
    Worker,
    WorkerJob,
)


def flaky(job: WorkerJob) -> bytes:
    raise ValueError(f"cannot parse {job.workload!r}")


def slow(job: WorkerJob) -> bytes:
    time.sleep(2)
    return b"too late"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()

    worker = Worker(args.servers, concurrency=2)
    worker.register("flaky", flaky)
    worker.register("slow", slow)
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Client(args.servers) as client:
            try:
                client.do("flaky", "x", timeout=10)
            except JobFailed as exc:  # without the exceptions option the server sends only WORK_FAIL
                print(f"JobFailed: {exc}")
        with Client(args.servers, exceptions=True) as client:
            try:
                client.do("flaky", "x", timeout=10)
            except JobException as exc:  # with it, the worker's message arrives too
                print(f"JobException: {exc.data.decode()}")
            try:
                client.do("slow", "x", timeout=0.5)
            except JobTimeout as exc:
                print(f"JobTimeout: {exc}")
            try:
                client.do("bad\0name", "x")
            except ValueError as exc:  # misuse is refused before anything is sent
                print(f"ValueError: {exc}")
        with Client("127.0.0.1:1", connect_timeout=1) as client:  # nothing listens on port 1
            try:
                client.do("reverse", "x", timeout=5)
            except NoServerAvailable as exc:
                print(f"NoServerAvailable: {exc}")
            except GearworksError as exc:
                print(f"{type(exc).__name__}: {exc}")
    finally:
        worker.stop()
        thread.join()


if __name__ == "__main__":
    main()
