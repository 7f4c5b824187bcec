"""Fuzzing job servers under load: gearworks (memory and SQLite queues) and C gearmand side by side.

For each server, many connections (24 by default) send streams of random and mutated packets (``tests/fuzzing.py``)
cut at random points, reconnecting whenever the server closes one, while a healthy worker and a healthy client
keep running foreground jobs of their own function beside them. Counted per server: packets delivered, crashes (the
server process gone; it is restarted on the same port and the run goes on), healthy jobs that failed while the
server was up (and those lost to a crash, apart), the RSS at start, at the end and its peak (VmRSS sampled from
/proc), and the jobs left queued. Every run is bounded by a packet count and a time budget.

Usage: python bench/fuzz.py [--quick] [--packets N] [--seconds S] [--connections C] [--servers ...] [--seed N]
(--quick: 100,000 packets or 15 s per server, under a minute in all; default 1,000,000 packets or 900 s each).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import selectors
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers starts the servers; tests.fuzzing makes the packets

from tests.fuzzing import mutated, valid_packet  # noqa: E402
from tests.peers.raw_worker import serve_echo  # noqa: E402
from tests.servers import ServerProcess, gearmand_process, gearworks_process, have, rss_kib  # noqa: E402

from gearworks.protocol import Decoder, Packet, PacketType, encode  # noqa: E402

T = PacketType
HOST = "127.0.0.1"
HEALTHY = b"fuzz-healthy-echo"
"""The healthy pair's function: never among the fuzzed function names."""
POOL = 20_000
"""Valid packets generated up front and drawn from (with fresh mutations) so the sender keeps the server busy."""
SERVERS = ("gearworks memory", "gearworks sqlite", "gearmand")


@dataclass
class Tally:
    """What one server's run counted."""

    packets: int = 0
    connections: int = 0
    crashes: int = 0
    healthy_jobs: int = 0
    healthy_failures: int = 0
    lost_to_crash: int = 0
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    rss_peak_kib: int = 0
    queued_at_end: int = -1
    seconds: float = 0.0
    first_failure: str = ""


class Watched:
    """A server process kept running for the whole run: crashes counted and restarted, RSS sampled."""

    def __init__(self, server: ServerProcess, tally: Tally) -> None:
        self.server = server
        self.tally = tally
        self.generation = 0
        """Bumped at every restart, so a healthy failure can tell whether a crash happened meanwhile."""
        self.lock = threading.Lock()

    def check(self) -> None:
        """Sample RSS; restart the server (same port) if its process is gone."""
        proc = self.server.proc
        assert proc is not None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it may die between the poll and the read
                self.tally.rss_peak_kib = max(self.tally.rss_peak_kib, rss_kib(proc.pid))
            return
        with self.lock:
            self.tally.crashes += 1
            self.generation += 1
            self.server.start()


def _job_round_trip(sock: socket.socket, decoder: Decoder, payload: bytes) -> None:
    """One foreground job of the healthy function; raises unless its WORK_COMPLETE carries the payload back."""
    sock.sendall(encode(T.SUBMIT_JOB, [HEALTHY, b"", payload]))
    while True:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("server closed the healthy client")
        for item in decoder.feed(data):
            assert isinstance(item, Packet)
            if item.type is T.WORK_COMPLETE:
                if item.args[1] != payload:
                    raise AssertionError(f"wrong result {item.args[1][:40]!r}")
                return
            if item.type in (T.WORK_FAIL, T.WORK_EXCEPTION, T.ERROR):
                raise AssertionError(f"{item.type.name} {item.args!r}")


def healthy_client(watched: Watched, stop: threading.Event) -> None:
    """Run foreground jobs back to back until ``stop``; count successes, failures and jobs lost to a crash."""
    tally = watched.tally
    number = 0
    while not stop.is_set():
        generation = watched.generation
        try:
            with socket.create_connection((HOST, watched.server.port), timeout=10) as sock:
                decoder = Decoder()
                while not stop.is_set():
                    number += 1
                    _job_round_trip(sock, decoder, b"job %d" % number)
                    tally.healthy_jobs += 1
        except (OSError, AssertionError) as exc:
            if stop.is_set():
                return
            time.sleep(0.5)  # let the watcher see a crash before blaming the server
            if watched.generation != generation or watched.server.proc is None or watched.server.proc.poll():
                tally.lost_to_crash += 1
            else:
                tally.healthy_failures += 1
                tally.first_failure = tally.first_failure or f"{type(exc).__name__}: {exc}"


def healthy_worker(watched: Watched, stop: threading.Event) -> None:
    """Echo worker of the healthy function; reconnects (and re-registers) whenever its connection drops."""
    while not stop.is_set():
        try:
            with socket.create_connection((HOST, watched.server.port), timeout=1) as sock:
                serve_echo(sock, HEALTHY, stop)
        except OSError:
            time.sleep(0.1)


class Stream:
    """One fuzzing connection: a stream of packets (maybe one malformed among them) sent in random cuts."""

    def __init__(self, rng: random.Random, pool: list[bytes], port: int) -> None:
        parts = [rng.choice(pool) for _ in range(rng.choice((1, 5, 50, 200)))]
        bad_at = len(parts)
        if rng.random() < 0.7:
            bad_at = rng.randrange(len(parts) + 1)
            parts.insert(bad_at, mutated(rng))
        self.ends: list[int] = []
        total = 0
        for part in parts[: bad_at + 1]:
            total += len(part)
            self.ends.append(total)
        self.data = b"".join(parts)
        self.pos = 0
        self.rng = rng
        self.deadline = time.monotonic() + 2.0
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.connect_ex((HOST, port))

    def delivered(self) -> int:
        """Packets sent whole, up to and including the malformed one (the server drops the rest)."""
        return sum(1 for end in self.ends if end <= self.pos)

    def step(self) -> bool:
        """Send the next cut and read what came back; False when this stream is finished."""
        if self.pos >= len(self.data) or time.monotonic() > self.deadline:
            return False
        cut = min(len(self.data), self.pos + self.rng.choice((1, 7, 100, 1000, 65536)))
        try:
            self.pos += self.sock.send(self.data[self.pos : cut])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        try:
            while True:
                if not self.sock.recv(1 << 16):
                    return False
        except (BlockingIOError, InterruptedError):
            return self.pos < len(self.data)
        except OSError:
            return False


def fuzz(watched: Watched, rng: random.Random, packets: int, seconds: float, connections: int) -> None:
    """Keep ``connections`` fuzzing streams going until ``packets`` were delivered or ``seconds`` passed."""
    pool = [valid_packet(rng) for _ in range(POOL)]
    tally = watched.tally
    selector = selectors.DefaultSelector()
    deadline = time.monotonic() + seconds
    next_check = 0.0

    def open_stream() -> None:
        stream = Stream(rng, pool, watched.server.port)
        tally.connections += 1
        selector.register(stream.sock, selectors.EVENT_WRITE | selectors.EVENT_READ, stream)

    def finish(stream: Stream) -> None:
        tally.packets += stream.delivered()
        selector.unregister(stream.sock)
        stream.sock.close()

    with watched.lock:
        for _ in range(connections):
            open_stream()
    while tally.packets < packets and time.monotonic() < deadline:
        if time.monotonic() >= next_check:
            watched.check()
            next_check = time.monotonic() + 0.25
        for key, _ in selector.select(0.05):
            stream: Stream = key.data
            if not stream.step():
                finish(stream)
                with watched.lock:
                    open_stream()
    for key in list(selector.get_map().values()):
        finish(key.data)
    selector.close()


def queued(port: int) -> int:
    """Jobs queued in total, from the admin ``status`` (-1 if the server does not answer)."""
    try:
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(b"status\n")
            data = b""
            while not data.endswith(b".\n"):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return -1
    rows = [line.split(b"\t") for line in data.splitlines() if b"\t" in line]
    return sum(int(row[1]) for row in rows if len(row) >= 4 and row[1].isdigit())


def run_one(make: Callable[[], ServerProcess], seed: int, packets: int, seconds: float, connections: int) -> Tally:
    """Fuzz one freshly started server with a healthy client and worker beside it."""
    tally = Tally()
    server = make().start()
    watched = Watched(server, tally)
    stop = threading.Event()
    threads = [
        threading.Thread(target=healthy_worker, args=(watched, stop), daemon=True),
        threading.Thread(target=healthy_client, args=(watched, stop), daemon=True),
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        tally.rss_start_kib = tally.rss_peak_kib = rss_kib(server.pid)
        started = time.monotonic()
        fuzz(watched, random.Random(seed), packets, seconds, connections)
        tally.seconds = time.monotonic() - started
        watched.check()
        tally.rss_end_kib = rss_kib(server.pid)
        tally.queued_at_end = queued(server.port)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        server.close()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 packets or 15 s per server")
    parser.add_argument("--packets", type=int, help="packets per server (default 1,000,000)")
    parser.add_argument("--seconds", type=float, help="time budget per server (default 900)")
    parser.add_argument("--connections", type=int, default=24)
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, from {', '.join(SERVERS)}")
    parser.add_argument("--seed", type=int, default=4730)
    parser.add_argument("--gearworks-option", action="append", default=[], help="extra flag for gearworks serve")
    args = parser.parse_args()
    packets = args.packets or (100_000 if args.quick else 1_000_000)
    seconds = args.seconds or (15.0 if args.quick else 900.0)
    tmp = tempfile.TemporaryDirectory(prefix="bench-fuzz-")
    extra = args.gearworks_option
    makers: dict[str, Callable[[], ServerProcess]] = {
        "gearworks memory": lambda: gearworks_process(*extra),
        "gearworks sqlite": lambda: gearworks_process("-q", f"sqlite:///{tmp.name}/fuzz.db", *extra),
        "gearmand": gearmand_process,
    }
    wanted = [name for name in args.servers.split(",") if name in makers]
    if not have("/usr/sbin/gearmand") and "gearmand" in wanted:
        print("gearmand not installed (Debian package gearman-job-server): skipped", file=sys.stderr)
        wanted.remove("gearmand")
    results: dict[str, Tally] = {}
    with tmp:
        for name in wanted:
            results[name] = run_one(makers[name], args.seed, packets, seconds, args.connections)
            print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
    report(results, args.connections, args.seed)


def report(results: dict[str, Tally], connections: int, seed: int) -> None:
    header = ["server", "packets", "s", "crashes", "healthy ok", "failed", "lost", "RSS start", "peak", "end", "queued"]
    print(f"{header[0]:18}" + "".join(f"{h:>11}" for h in header[1:]))
    for name, tally in results.items():
        row = [
            f"{tally.packets:,}",
            f"{tally.seconds:.0f}",
            tally.crashes,
            f"{tally.healthy_jobs:,}",
            tally.healthy_failures,
            tally.lost_to_crash,
            f"{tally.rss_start_kib / 1024:.0f} MB",
            f"{tally.rss_peak_kib / 1024:.0f} MB",
            f"{tally.rss_end_kib / 1024:.0f} MB",
            tally.queued_at_end,
        ]
        print(f"{name:18}" + "".join(f"{value!s:>11}" for value in row))
        if tally.first_failure:
            print(f"  first healthy failure on {name}: {tally.first_failure}")
    summary = {name: asdict(tally) for name, tally in results.items()}
    print("RESULT " + json.dumps({"connections": connections, "seed": seed, "servers": summary}))


if __name__ == "__main__":
    main()
