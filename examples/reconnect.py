"""Surviving a server restart: a worker and a client keep going while the job server is stopped and started
again. The worker reconnects with backoff and registers again by itself; the client retries a job that was cut
off (``retry_count``) and this loop retries one that found no server.

    python examples/reconnect.py 127.0.0.1:4730 --jobs 20    # restart the server while it runs
"""

from __future__ import annotations

import argparse
import threading
import time

from gearworks import Client, ConnectionLost, NoServerAvailable, Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between jobs")
    args = parser.parse_args()

    worker = Worker(args.servers, reconnect_delay=0.1, max_reconnect_delay=1.0)
    worker.register("reverse", lambda job: job.workload[::-1])
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    done = 0
    deadline = time.monotonic() + 120
    try:
        with Client(args.servers, backoff_initial=0.1, backoff_maximum=1.0) as client:
            for n in range(1, args.jobs + 1):
                while time.monotonic() < deadline:
                    try:
                        result = client.do("reverse", f"job {n}", timeout=10, retry_count=3)
                    except (ConnectionLost, NoServerAvailable) as exc:
                        print(f"job {n}: {type(exc).__name__}, retrying", flush=True)
                        time.sleep(0.5)
                        continue
                    print(f"job {n}: {result.decode()}", flush=True)
                    done += 1
                    break
                time.sleep(args.pause)
    finally:
        worker.stop()
        thread.join()
    print(f"{done} of {args.jobs} jobs done")


if __name__ == "__main__":
    main()
