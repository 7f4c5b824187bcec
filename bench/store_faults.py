"""Durable-queue faults: what clients see when the store restarts or hangs, and how long SIGTERM takes then.

Scenarios (each against a fresh ``gearworks serve -q URL`` with its default ``--queue-timeout``):
  pg restart   a client pipelines background submissions (100 in flight); PostgreSQL is stopped with
               ``pg_ctl stop -m fast`` and started again 1 s later. Reported: submissions refused in the 10 s after
               the restart, seconds from the restart to the first accepted one, acknowledged jobs missing from
               the table afterwards.
  pg lock      another session holds ``LOCK TABLE gearworks_jobs IN ACCESS EXCLUSIVE MODE``
  redis stop   redis-server is stopped with SIGSTOP
               for both: seconds until a submission is answered (capped at 30), the slowest ECHO and admin
               ``status`` on other connections meanwhile, and seconds from SIGTERM to exit during the hang.
Usage: python bench/store_faults.py [--quick]   (run it with PYTHONPATH pointing at the tree to measure)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers / tests.datastores start the servers

from tests.datastores import PostgresCluster, postgres_server, redis_process  # noqa: E402
from tests.servers import ServerProcess, gearworks_process  # noqa: E402

from gearworks.protocol import Decoder, Packet, PacketType, encode  # noqa: E402

CAP = 30.0
"""Longest wait for one answer or one exit before it is reported as ``>= CAP``."""


class Submitter(threading.Thread):
    """Pipelines SUBMIT_JOB_BG in rounds of ``depth`` and records (send time, accepted?, unique) per submission."""

    def __init__(self, port: int, depth: int = 100) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CAP)
        self.depth = depth
        self.outcomes: list[tuple[float, bool, bytes]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        decoder = Decoder()
        n = 0
        while not self.stopping.is_set():
            uniques = [b"j%d" % i for i in range(n, n + self.depth)]
            n += self.depth
            sent = time.monotonic()
            self.sock.sendall(b"".join(encode(PacketType.SUBMIT_JOB_BG, [b"f", u, b"x"]) for u in uniques))
            replies: list[Packet] = []
            while len(replies) < len(uniques):
                data = self.sock.recv(65536)
                if not data:
                    return
                replies.extend(p for p in decoder.feed(data) if isinstance(p, Packet))
            for unique, reply in zip(uniques, replies, strict=True):
                self.outcomes.append((sent, reply.type is PacketType.JOB_CREATED, unique))
            if not all(reply.type is PacketType.JOB_CREATED for reply in replies):
                time.sleep(0.01)  # a refusing server answers at once: do not spin


def pg_restart(cluster: PostgresCluster) -> dict[str, float]:
    import psycopg

    server = gearworks_process("-q", cluster.url).start()
    try:
        submitter = Submitter(server.port)
        submitter.start()
        time.sleep(2)
        cluster.stop("fast")
        time.sleep(1)
        cluster.start()
        restarted = time.monotonic()
        time.sleep(10)
        submitter.stopping.set()
        submitter.join(CAP)
        after = [(ok, t) for t, ok, _ in submitter.outcomes if restarted <= t < restarted + 10]
        first_ok = next((t - restarted for ok, t in after if ok), CAP)
        acked = {unique for _, ok, unique in submitter.outcomes if ok}
        server.stop()
        with psycopg.connect(cluster.url) as db:
            stored = {bytes(row[0]) for row in db.execute("SELECT unique_key FROM gearworks_jobs")}
            db.execute("DROP TABLE IF EXISTS gearworks_jobs, gearworks_jobs_dead")
        return {
            "refused_10s_after_restart": sum(not ok for ok, _ in after),
            "accepted_10s_after_restart": sum(ok for ok, _ in after),
            "first_accepted_after_s": round(first_ok, 2),
            "acknowledged_lost": len(acked - stored),
        }
    finally:
        server.close()


def _answer(port: int, packet: bytes, admin: bool = False) -> float:
    """Seconds until ``port`` answers ``packet`` (CAP if it does not)."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CAP) as sock:
            sock.sendall(packet)
            data = b""
            while not (data.endswith(b".\n") if admin else len(data) >= 12):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return CAP
    return time.monotonic() - start


def hang(server: ServerProcess, freeze: Callable[[], object], thaw: Callable[[], object]) -> dict[str, float]:
    """Freeze the store, then measure one submission, other connections, and SIGTERM."""
    assert _answer(server.port, encode(PacketType.SUBMIT_JOB_BG, [b"f", b"warm", b"x"])) < CAP
    freeze()
    try:
        result: dict[str, float] = {}
        done = threading.Event()

        def submit() -> None:
            result["submission_answered_after_s"] = round(_answer(server.port, encode(
                PacketType.SUBMIT_JOB_BG, [b"f", b"hung", b"x"])), 2)  # fmt: skip
            done.set()

        threading.Thread(target=submit, daemon=True).start()
        echo = admin = 0.0
        while not done.wait(0.2):
            echo = max(echo, _answer(server.port, encode(PacketType.ECHO_REQ, [b"ping"])))
            admin = max(admin, _answer(server.port, b"status\n", admin=True))
        result["slowest_echo_s"] = round(echo, 3)
        result["slowest_admin_status_s"] = round(admin, 3)
        blocked = threading.Thread(target=_answer, args=(server.port, encode(
            PacketType.SUBMIT_JOB_BG, [b"f", b"at-exit", b"x"])), daemon=True)  # fmt: skip
        blocked.start()
        time.sleep(0.3)  # the write is in flight (hung) when SIGTERM comes
        start = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(CAP)
            result["sigterm_exit_s"] = round(time.monotonic() - start, 2)
        except Exception:
            result["sigterm_exit_s"] = CAP
        return result
    finally:
        thaw()
        server.close()


def pg_lock(cluster: PostgresCluster) -> dict[str, float]:
    import psycopg

    server = gearworks_process("-q", cluster.url).start()
    locker = psycopg.connect(cluster.url)
    try:
        return hang(
            server,
            lambda: locker.execute("LOCK TABLE gearworks_jobs IN ACCESS EXCLUSIVE MODE"),
            locker.rollback,
        )
    finally:
        locker.close()
        with psycopg.connect(cluster.url, autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS gearworks_jobs, gearworks_jobs_dead")


def redis_stop() -> dict[str, float]:
    redis = redis_process().start()
    try:
        server = gearworks_process("-q", f"redis://127.0.0.1:{redis.port}/0").start()
        return hang(server, lambda: os.kill(redis.pid, signal.SIGSTOP), lambda: os.kill(redis.pid, signal.SIGCONT))
    finally:
        redis.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry: every scenario is short")
    parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with postgres_server() as cluster:
        cluster.start()
        results["pg restart"] = pg_restart(cluster)
        results["pg lock"] = pg_lock(cluster)
    results["redis stop"] = redis_stop()
    for scenario, figures in results.items():
        print(f"{scenario:12} " + "  ".join(f"{name}={value}" for name, value in figures.items()))
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
