"""Several job servers: a worker serves all of them; a client spreads jobs over them, a unique key always to
the same server, others round-robin; each job records which server took it.

    python examples/multi_server.py 127.0.0.1:4730,127.0.0.1:4731
"""

from __future__ import annotations

import argparse
import collections
import threading

from gearworks import Client, Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port,host:port (default $GEARMAN_SERVERS)")
    args = parser.parse_args()

    worker = Worker(args.servers, concurrency=4)  # one connection to each server
    worker.register("reverse", lambda job: job.workload[::-1])
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Client(args.servers) as client:
            print(f"servers: {', '.join(str(server) for server in client.servers)}")
            tasks = client.task_set()
            jobs = [tasks.add("reverse", f"job {n}") for n in range(20)]
            keyed = [tasks.add("reverse", "same", unique="user-42") for _ in range(3)]
            tasks.wait(timeout=30)
        per_server = collections.Counter(str(job.server) for job in jobs)
        for server, count in sorted(per_server.items()):
            print(f"{server}: {count} jobs")
        print(f"unique key user-42 went to {len({str(job.server) for job in keyed})} server(s)")
        print(f"all results correct: {all(job.result() == f'job {n}'.encode()[::-1] for n, job in enumerate(jobs))}")
    finally:
        worker.stop()
        thread.join()


if __name__ == "__main__":
    main()
