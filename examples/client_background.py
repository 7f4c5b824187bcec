"""Background (fire-and-forget) jobs: the client gets a handle and leaves; a worker that starts later runs them.

python examples/client_background.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import threading

from gearworks import Client, Worker, WorkerJob

RECIPIENTS = ["ada@example.org", "grace@example.org", "linus@example.org"]


def send_mail(job: WorkerJob) -> bytes:
    print(f"worker: mailed {job.workload.decode()}")
    return b"sent"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()

    with Client(args.servers) as client:
        for address in RECIPIENTS:
            handle = client.submit_background("send_mail", address)
            print(f"client: queued {address} as {handle.decode()}")
    print("client: gone; the jobs wait on the server")

    worker = Worker(args.servers)
    worker.register("send_mail", send_mail)
    guard = threading.Timer(30, worker.stop)  # bounded: never wait forever for jobs that are not there
    guard.start()
    handled = worker.work(max_jobs=len(RECIPIENTS))
    guard.cancel()
    print(f"worker: {handled} background jobs done")


if __name__ == "__main__":
    main()
