"""Scatter/gather: split a text into parts, count each part's words on the workers in parallel (a task set),
and add up the answers.

    python examples/client_fanout.py 127.0.0.1:4730 --parts 8
"""

from __future__ import annotations

import argparse
import threading

from gearworks import Client, Worker, WorkerJob

TEXT = " ".join(f"word{n}" for n in range(1000))


def wordcount(job: WorkerJob) -> bytes:
    return str(len(job.workload.split())).encode()


def split(text: str, parts: int) -> list[str]:
    words = text.split()
    size = -(-len(words) // parts)
    return [" ".join(words[start : start + size]) for start in range(0, len(words), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--parts", type=int, default=8)
    args = parser.parse_args()

    worker = Worker(args.servers, concurrency=4)  # four jobs at once, in a thread pool
    worker.register("wordcount", wordcount)
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False})
    thread.start()
    try:
        with Client(args.servers) as client:
            tasks = client.task_set()
            for part in split(TEXT, args.parts):  # scatter: nothing is sent until wait()
                tasks.add("wordcount", part)
            tasks.wait(timeout=30)  # gather
        counts = [int(result) for result in tasks.results() if isinstance(result, bytes)]
        print(f"{len(counts)} parts counted: {sum(counts)} words (counted here: {len(TEXT.split())})")
    finally:
        worker.stop()
        thread.join()


if __name__ == "__main__":
    main()
