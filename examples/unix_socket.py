"""A Unix socket: clients, workers and admin take a socket path wherever they take host:port
(``gearworks serve --unix-socket PATH``).

    gearworks serve --unix-socket /tmp/gearman.sock &
    python examples/unix_socket.py /tmp/gearman.sock
"""

from __future__ import annotations

import argparse
import threading

from gearworks import Admin, Client, Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="the server's Unix socket")
    args = parser.parse_args()

    worker = Worker(args.path)
    worker.register("reverse", lambda job: job.workload[::-1])
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Client(args.path) as client:
            print(f"reverse over {args.path}: {client.do('reverse', 'hello', timeout=10).decode()}")
        with Admin(args.path) as admin:
            print(f"admin over {args.path}: {admin.version()}")
    finally:
        worker.stop()
        thread.join()


if __name__ == "__main__":
    main()
