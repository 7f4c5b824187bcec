"""Monitoring by polling: read admin ``status`` every interval while workers drain a backlog, print each
function's queued/running/workers, and stop once the queue is empty.

    python examples/monitoring.py 127.0.0.1:4730 --interval 0.2
"""

from __future__ import annotations

import argparse
import threading
import time

from gearworks import Admin, Client, Worker, WorkerJob

BACKLOG = 40


def encode(job: WorkerJob) -> bytes:
    time.sleep(0.02)
    return b""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port (default the first of $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between polls")
    args = parser.parse_args()

    with Client(args.servers) as client:
        for n in range(BACKLOG):
            client.submit_background("encode", f"video {n}")
    worker = Worker(args.servers, concurrency=2)
    worker.register("encode", encode)
    thread = threading.Thread(target=worker.work, kwargs={"max_jobs": BACKLOG, "handle_signals": False})
    thread.start()
    started = time.monotonic()
    try:
        with Admin(args.servers) as admin:
            while time.monotonic() - started < 60:  # bounded, whatever happens
                row = next((row for row in admin.status() if row.function == b"encode"), None)
                elapsed = time.monotonic() - started
                if row is None or row.total == 0:
                    print(f"{elapsed:5.1f}s encode drained")
                    break
                print(f"{elapsed:5.1f}s encode queued={row.queued} running={row.running} workers={row.workers}")
                time.sleep(args.interval)
    finally:
        thread.join(60)
        worker.stop()


if __name__ == "__main__":
    main()
