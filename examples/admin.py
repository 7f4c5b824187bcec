"""Admin: the server's version and pid, each function's queue, the connected workers, and a queue limit, through
the admin text protocol (what ``gearadmin`` and ``gearworks admin`` use).

    python examples/admin.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import threading
import time

from gearworks import Admin, Client, Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port (default the first of $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()

    with Client(args.servers) as client:  # three jobs nobody serves yet
        for name in ("a.png", "b.png", "c.png"):
            client.submit_background("thumbnail", name)
    worker = Worker(args.servers, client_id="admin-example")
    worker.register("reverse", lambda job: job.workload[::-1])
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Admin(args.servers) as admin:
            print(f"version: {admin.version()}")
            print(f"pid: {admin.getpid()}")
            for _ in range(200):  # the worker registers asynchronously
                if any(row.client_id == b"admin-example" for row in admin.workers()):
                    break
                time.sleep(0.01)
            for row in sorted(admin.status(), key=lambda row: row.function):
                if row.function not in (b"thumbnail", b"reverse"):
                    continue  # other functions this server knows
                name = row.function.decode()
                print(f"status: {name} queued={row.queued} running={row.running} workers={row.workers}")
            for info in admin.workers():
                if info.client_id == b"admin-example":
                    print(f"worker: {info.client_id.decode()} serves {b' '.join(info.functions).decode()}")
            admin.maxqueue("thumbnail", 100)  # refuse submissions past 100 queued jobs
            print("maxqueue thumbnail 100: OK")
    finally:
        worker.stop()
        thread.join()

    worker = Worker(args.servers)  # serve the queued jobs, so the server is left as it was found
    worker.register("thumbnail", lambda job: b"")
    worker.work(max_jobs=3, handle_signals=False)
    with Admin(args.servers) as admin:
        left = {row.function: row.total for row in admin.status()}.get(b"thumbnail", 0)
    print(f"thumbnail jobs left: {left}")


if __name__ == "__main__":
    main()
