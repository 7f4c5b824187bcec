"""Kill -9 cycles under load for each durable queue, and the stores themselves killed under load.

Server kills (per backend: SQLite, Redis, PostgreSQL): 8 submitters pipeline SUBMIT_JOB_BG (unique keys name the
submitter and sequence) in batches of 50 on their own connections, and a worker runs jobs as they come (the
submitters wait while more than MAX_QUEUED acknowledged jobs have not run, so replays stay short). Each cycle
lets the load run 0.3-1.2 s, then SIGKILLs ``gearworks serve`` and starts it again on the same port; submitters
and the worker reconnect by themselves. At the end every queued job is drained: an acknowledged job (JOB_CREATED
received) that was neither completed by the worker nor drained is LOST. Jobs run twice (completed, then replayed
because the removal had not been written) are counted too: delivery is at least once.

Store kills (Redis, PostgreSQL): the same load against one server while the store process (PostgreSQL: the
postmaster and every backend) is SIGKILLed and restarted after a second, a few times. Reported: submissions refused
while it was down (ERROR QUEUE_ERROR), seconds from the store being back until the first acknowledgement, and lost
acknowledged jobs.

Usage: python bench/durable_crash.py [--quick] [--cycles N] [--backends sqlite,redis,postgres]
(--quick: 3 server kills and 1 store kill per backend; default 100 and 3).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers / tests.datastores start the servers

from tests.datastores import postgres_bin, postgres_cluster, redis_process  # noqa: E402
from tests.servers import ServerProcess, gearworks_process, have  # noqa: E402

from gearworks.protocol import Decoder, Packet, PacketType, encode  # noqa: E402

T = PacketType
HOST = "127.0.0.1"
FUNCTION = b"crash"
SUBMITTERS = 8
BATCH = 50
MAX_QUEUED = 20_000
"""Acknowledged jobs not yet run beyond which submitters wait: the queue (and each restart's replay) stays bounded."""


@dataclass
class Ledger:
    """What the load was told: acknowledged and refused submissions, jobs the worker completed (thread-safe)."""

    acked: set[bytes] = field(default_factory=set)
    refused: int = 0
    completed: set[bytes] = field(default_factory=set)
    ran_twice: int = 0
    last_ack: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _replies(sock: socket.socket, decoder: Decoder, count: int) -> Iterator[Packet]:
    got = 0
    while got < count:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("closed")
        for item in decoder.feed(data):
            assert isinstance(item, Packet)
            got += 1
            yield item


def submitter(number: int, port: int, ledger: Ledger, stop: threading.Event) -> None:
    """Pipeline batches of BATCH background submissions; each reply (in order) acknowledges or refuses one."""
    sequence = 0
    while not stop.is_set():
        try:
            with socket.create_connection((HOST, port), timeout=10) as sock:
                decoder = Decoder()
                while not stop.is_set():
                    if len(ledger.acked) - len(ledger.completed) > MAX_QUEUED:
                        time.sleep(0.01)
                        continue
                    uniques = [b"s%d-%d" % (number, sequence + n) for n in range(BATCH)]
                    sequence += BATCH
                    sock.sendall(b"".join(encode(T.SUBMIT_JOB_BG, [FUNCTION, u, b"payload " + u]) for u in uniques))
                    refused = 0
                    for unique, reply in zip(uniques, _replies(sock, decoder, BATCH), strict=False):
                        with ledger.lock:
                            if reply.type is T.JOB_CREATED:
                                ledger.acked.add(unique)
                                ledger.last_ack = time.monotonic()
                            else:
                                refused += 1
                                ledger.refused += 1
                    if refused == BATCH:
                        time.sleep(0.02)  # the store is down: keep asking, not spinning
        except OSError:
            time.sleep(0.05)


def run_worker(port: int, ledger: Ledger, stop: threading.Event, idle: float | None = None) -> None:
    """GRAB_JOB_UNIQ worker: complete every job, record its unique key; with ``idle``, return after that long
    without a job (the final drain)."""
    last = time.monotonic()
    while not stop.is_set():
        try:
            with socket.create_connection((HOST, port), timeout=5) as sock:
                decoder = Decoder()
                pending = encode(T.CAN_DO, [FUNCTION])
                while not stop.is_set():
                    sock.sendall(pending + encode(T.GRAB_JOB_UNIQ))
                    reply = next(_replies(sock, decoder, 1))
                    if reply.type is not T.JOB_ASSIGN_UNIQ:  # NO_JOB, or an ERROR while the store is down
                        pending = b""
                        if idle is not None and time.monotonic() - last > idle:
                            return
                        time.sleep(0.02)
                        continue
                    handle, _, unique, _ = reply.args
                    with ledger.lock:
                        if unique in ledger.completed:
                            ledger.ran_twice += 1
                        ledger.completed.add(unique)
                    last = time.monotonic()
                    pending = encode(T.WORK_COMPLETE, [handle, b"ok"])
        except OSError:
            if idle is not None and time.monotonic() - last > idle:
                return
            time.sleep(0.05)


@contextlib.contextmanager
def load(port: int, ledger: Ledger) -> Iterator[None]:
    """SUBMITTERS submitters and one worker against ``port`` until the block ends."""
    stop = threading.Event()
    threads = [threading.Thread(target=submitter, args=(n, port, ledger, stop), daemon=True) for n in range(SUBMITTERS)]
    threads.append(threading.Thread(target=run_worker, args=(port, ledger, stop), daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


def verdict(server: ServerProcess, ledger: Ledger) -> dict[str, int]:
    """Drain what is queued (server running), then count the acknowledged jobs that never ran."""
    run_worker(server.port, ledger, threading.Event(), idle=2.0)
    lost = ledger.acked - ledger.completed
    return {"acked": len(ledger.acked), "refused": ledger.refused, "lost": len(lost), "ran_twice": ledger.ran_twice}


def server_kills(url: str, cycles: int, rng: random.Random) -> dict[str, int]:
    """``cycles`` SIGKILLs of gearworks serve under load; the lost count must be 0."""
    server = gearworks_process("-q", url).start(timeout=60)
    ledger = Ledger()
    try:
        with load(server.port, ledger):
            for _ in range(cycles):
                time.sleep(rng.uniform(0.3, 1.2))
                server.kill()
                server.start(timeout=60)
            time.sleep(0.5)
        result = verdict(server, ledger)
        result["kills"] = cycles
        return result
    finally:
        server.close()


def store_kills(url: str, kill: Callable[[], object], restart: Callable[[], object], times: int) -> dict[str, object]:
    """Kill the store under load ``times`` times, restart it a second later, and time the recovery."""
    server = gearworks_process("-q", url).start(timeout=60)
    ledger = Ledger()
    recoveries: list[float | None] = []
    refused_while_down = 0
    try:
        with load(server.port, ledger):
            time.sleep(1.0)
            for _ in range(times):
                refused_before = ledger.refused
                kill()
                time.sleep(1.0)
                restart()
                back = time.monotonic()
                deadline = back + 30
                while ledger.last_ack < back and time.monotonic() < deadline:
                    time.sleep(0.05)
                recoveries.append(round(ledger.last_ack - back, 2) if ledger.last_ack >= back else None)
                refused_while_down += ledger.refused - refused_before
                time.sleep(1.0)
        alive = server.proc is not None and server.proc.poll() is None
        result: dict[str, object] = dict(verdict(server, ledger)) if alive else {"acked": len(ledger.acked)}
        result.update(
            store_kills=times, refused_while_down=refused_while_down, recovery_s=recoveries, server_alive=alive
        )
        return result
    finally:
        server.close()


def restart(server: ServerProcess) -> None:
    server.start()


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its children (a postmaster and its backends)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
    for each in [pid, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


def kill_postgres(port: int) -> Path:
    """SIGKILL the postmaster listening on ``port`` and its backends, as a crash would; then remove its lock file.

    The postmaster was started by pg_ctl, so it is re-parented to PID 1, which in a container may never reap it:
    the zombie keeps its PID alive and PostgreSQL would refuse to start over a lock naming a "running" server.
    Returns the data directory.
    """
    found = subprocess.run(["pgrep", "-f", f"postgres .*-p {port} "], capture_output=True, text=True, check=False)
    pid = min(int(each) for each in found.stdout.split())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    data = Path(argv[argv.index(b"-D") + 1].decode())
    kill_tree(pid)
    time.sleep(0.5)
    (data / "postmaster.pid").unlink(missing_ok=True)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 server kills and 1 store kill per backend")
    parser.add_argument("--cycles", type=int, help="server kills per backend (default 100)")
    parser.add_argument("--store-kills", type=int, help="store kills per backend (default 3)")
    parser.add_argument("--backends", default="sqlite,redis,postgres")
    parser.add_argument("--seed", type=int, default=4730)
    args = parser.parse_args()
    cycles = args.cycles or (3 if args.quick else 100)
    store_times = args.store_kills or (1 if args.quick else 3)
    rng = random.Random(args.seed)
    wanted = args.backends.split(",")
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        if "sqlite" in wanted:
            results["sqlite"] = dict(server_kills(f"sqlite:///{tmp}/crash.db", cycles, rng))
            print(f"  sqlite: {results['sqlite']}", file=sys.stderr, flush=True)
        if "redis" in wanted and have("/usr/bin/redis-server"):
            redis = redis_process().start()
            try:
                flush = ["redis-cli", "-p", str(redis.port), "flushall"]
                url = f"redis://127.0.0.1:{redis.port}/0"
                results["redis"] = dict(server_kills(url, cycles, rng))
                subprocess.run(flush, check=True, capture_output=True)
                results["redis store"] = store_kills(url, redis.kill, lambda: restart(redis), store_times)
                print(f"  redis: {results['redis']}, {results['redis store']}", file=sys.stderr, flush=True)
            finally:
                redis.close()
        if "postgres" in wanted:
            postgres(results, cycles, store_times, rng)
    report(results)


def postgres(results: dict[str, dict[str, object]], cycles: int, store_times: int, rng: random.Random) -> None:
    """The PostgreSQL rows (skipped, with a note, where initdb is missing)."""
    if postgres_bin() is None:
        print("  postgres skipped: initdb not found (Debian package postgresql)", file=sys.stderr)
        return
    with postgres_cluster() as start:
        url = start()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        results["postgres"] = dict(server_kills(url, cycles, rng))
        print(f"  postgres: {results['postgres']}", file=sys.stderr, flush=True)
        subprocess.run(["psql", url, "-qc", "DROP TABLE IF EXISTS gearworks_jobs"], check=False, capture_output=True)
        data: list[Path] = []
        results["postgres store"] = store_kills(
            url, lambda: data.append(kill_postgres(port)), lambda: restart_postgres(start, data[-1]), store_times
        )
        print(f"  postgres store: {results['postgres store']}", file=sys.stderr, flush=True)


def restart_postgres(start: Callable[[], str], data: Path) -> None:
    """Start the killed cluster again: crash recovery can outlast pg_ctl's wait, so a few tries; the server log's
    tail is shown if it never comes back."""
    for attempt in range(5):
        try:
            start()
            return
        except subprocess.CalledProcessError:
            time.sleep(1.0 + attempt)
    log = (data.parent / "server.log").read_text(errors="replace")
    raise RuntimeError(f"PostgreSQL did not restart:\n{log[-2000:]}")


def report(results: dict[str, dict[str, object]]) -> None:
    print(f"{'backend':16}{'kills':>7}{'acked':>10}{'refused':>9}{'lost':>6}{'twice':>7}  recovery after a store kill")
    for name, row in results.items():
        kills = row.get("kills", row.get("store_kills"))
        print(
            f"{name:16}{kills!s:>7}{row.get('acked', '-')!s:>10}{row.get('refused', '-')!s:>9}"
            f"{row.get('lost', '-')!s:>6}{row.get('ran_twice', '-')!s:>7}  {row.get('recovery_s', '')}"
        )
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
