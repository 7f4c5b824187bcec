"""One foreground job: submit it, wait for the result, print it.

The worker it needs runs in a thread of this script, so it works against an empty job server:

    python examples/client_foreground.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import threading

from gearworks import Client, Worker, WorkerJob


def reverse(job: WorkerJob) -> bytes:
    return job.workload[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()

    worker = Worker(args.servers)
    worker.register("reverse", reverse)
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Client(args.servers) as client:
            result = client.do("reverse", "hello", timeout=10)
        print(f"reverse('hello') = {result.decode()}")
    finally:
        worker.stop()
        thread.join()


if __name__ == "__main__":
    main()
