"""Soak: a job server under hours-shaped mixed load, its resident memory and open files sampled for a trend.

Load (one driver process, raw protocol over asyncio; every loop stops at the deadline):
  workers   come and go: each serves for 1-8 s, then leaves, one in four of them in the middle of a job
            (the server requeues it); jobs take 0-5 ms
  clients   foreground submitters timing each job (submit → WORK_COMPLETE), reconnecting every few hundred jobs;
            clients that submit and disconnect before the result; background submitters; GET_STATUS and admin
            ``status`` pollers
Sampled every few seconds: VmRSS and the number of open fds of the server. Printed: a least-squares slope of each
over the second half of the run (the first half is warm-up), and the foreground job latency p50/p99/max. After the
load stops the fds are counted again (every connection closed: back to the start). Servers run one after the
other, each for the whole duration: gearworks (``--queue`` memory or a URL), and C gearmand with
``--servers gearworks,gearmand``.

Usage: python bench/soak.py [--quick] [--minutes M] [--servers gearworks,gearmand] [--queue sqlite]
(--quick: 2 minutes; default 30 minutes per server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers starts the servers

from tests.servers import (  # noqa: E402
    ServerProcess,
    gearmand_process,
    gearworks_process,
    have,
    open_fds,
    rss_kib,
)

from gearworks.protocol import Decoder, Packet, PacketType, encode  # noqa: E402

T = PacketType
HOST = "127.0.0.1"
FUNCTION = b"soak"
WORKERS = 6
FOREGROUND = 4
DROPPERS = 2
BACKGROUND = 1
BACKGROUND_PER_S = 100


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if not var:
        return 0.0
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


@dataclass
class Counts:
    """What the load did and saw."""

    latencies: list[float] = field(default_factory=list)
    foreground_failed: int = 0
    dropped_clients: int = 0
    background: int = 0
    worker_sessions: int = 0
    left_mid_job: int = 0
    jobs_done: int = 0
    errors: int = 0


class Link:
    """One raw connection: send packets, read the next packet."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = Decoder()
        self.pending: list[Packet] = []

    @classmethod
    async def open(cls, port: int) -> Link:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    def send(self, ptype: PacketType, *args: bytes) -> None:
        self.writer.write(encode(ptype, args))

    async def next(self, wait: float) -> Packet:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(1 << 16), wait)
            if not data:
                raise ConnectionError("server closed the connection")
            self.pending.extend(item for item in self.decoder.feed(data) if isinstance(item, Packet))
        return self.pending.pop(0)

    def close(self) -> None:
        self.writer.close()


async def worker(port: int, deadline: float, counts: Counts, rng: random.Random) -> None:
    """Sessions of 1-8 s back to back until the deadline; a quarter of them leave holding a job."""
    while time.monotonic() < deadline:
        counts.worker_sessions += 1
        session_end = min(deadline, time.monotonic() + rng.uniform(1, 8))
        leave_mid_job = rng.random() < 0.25
        try:
            link = await Link.open(port)
            try:
                link.send(T.CAN_DO, FUNCTION)
                link.send(T.GRAB_JOB)
                while time.monotonic() < session_end:
                    packet = await link.next(max(session_end - time.monotonic(), 0.01))
                    if packet.type is T.JOB_ASSIGN:
                        if leave_mid_job and time.monotonic() > session_end - 1:
                            counts.left_mid_job += 1
                            break
                        await asyncio.sleep(rng.uniform(0, 0.005))
                        link.send(T.WORK_COMPLETE, packet.args[0], packet.args[2])
                        link.send(T.GRAB_JOB)
                        counts.jobs_done += 1
                    elif packet.type is T.NO_JOB:
                        link.send(T.PRE_SLEEP)
                    elif packet.type is T.NOOP:
                        link.send(T.GRAB_JOB)
            finally:
                link.close()
        except (TimeoutError, OSError):
            pass


async def foreground(port: int, deadline: float, counts: Counts, rng: random.Random) -> None:
    """Foreground jobs one after another, each timed; a new connection every 100-500 jobs."""
    while time.monotonic() < deadline:
        try:
            link = await Link.open(port)
        except OSError:
            counts.errors += 1
            await asyncio.sleep(0.1)
            continue
        try:
            for _ in range(rng.randrange(100, 500)):
                if time.monotonic() >= deadline:
                    break
                payload = rng.randbytes(rng.choice((10, 100, 1000, 10_000)))
                started = time.perf_counter()
                link.send(T.SUBMIT_JOB, FUNCTION, b"", payload)
                while True:
                    packet = await link.next(30)
                    if packet.type is T.WORK_COMPLETE:
                        counts.latencies.append(time.perf_counter() - started)
                        if packet.args[1] != payload:
                            counts.foreground_failed += 1
                        break
                    if packet.type in (T.WORK_FAIL, T.ERROR):
                        counts.foreground_failed += 1
                        break
        except (TimeoutError, OSError):
            counts.foreground_failed += 1
        finally:
            link.close()


async def dropper(port: int, deadline: float, counts: Counts, rng: random.Random) -> None:
    """Clients that submit a foreground job and disconnect before its result (sometimes before JOB_CREATED)."""
    while time.monotonic() < deadline:
        try:
            link = await Link.open(port)
            link.send(T.SUBMIT_JOB, FUNCTION, b"", rng.randbytes(100))
            if rng.random() < 0.5:
                await link.next(5)
            link.close()
            counts.dropped_clients += 1
        except (TimeoutError, OSError):
            counts.errors += 1
        await asyncio.sleep(rng.uniform(0, 0.05))


async def background(port: int, deadline: float, counts: Counts, rng: random.Random) -> None:
    """Background submissions at BACKGROUND_PER_S, each waiting for its JOB_CREATED."""
    while time.monotonic() < deadline:
        try:
            link = await Link.open(port)
        except OSError:
            counts.errors += 1
            await asyncio.sleep(0.1)
            continue
        try:
            while time.monotonic() < deadline:
                link.send(T.SUBMIT_JOB_BG, FUNCTION, b"", rng.randbytes(rng.choice((10, 1000))))
                packet = await link.next(30)
                if packet.type is T.JOB_CREATED:
                    counts.background += 1
                    link.send(T.GET_STATUS, packet.args[0])
                    await link.next(30)
                else:
                    counts.errors += 1
                await asyncio.sleep(1 / BACKGROUND_PER_S)
        except (TimeoutError, OSError):
            counts.errors += 1
        finally:
            link.close()


async def admin_poller(port: int, deadline: float, counts: Counts) -> None:
    """Admin ``status`` once a second, on a fresh connection each time."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"status\n")
            data = b""
            while not data.endswith(b".\n"):
                chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
                if not chunk:
                    break
                data += chunk
            writer.close()
        except (TimeoutError, OSError):
            counts.errors += 1
        await asyncio.sleep(1)


async def sampler(pid: int, deadline: float, every: float, samples: list[tuple[float, int, int]]) -> None:
    started = time.monotonic()
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - started, rss_kib(pid), open_fds(pid)))
        await asyncio.sleep(every)


async def load(server: ServerProcess, seconds: float, seed: int) -> tuple[Counts, list[tuple[float, int, int]]]:
    counts = Counts()
    samples: list[tuple[float, int, int]] = []
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    port = server.port
    tasks = [worker(port, deadline, counts, random.Random(rng.random())) for _ in range(WORKERS)]
    tasks += [foreground(port, deadline, counts, random.Random(rng.random())) for _ in range(FOREGROUND)]
    tasks += [dropper(port, deadline, counts, random.Random(rng.random())) for _ in range(DROPPERS)]
    tasks += [background(port, deadline, counts, random.Random(rng.random())) for _ in range(BACKGROUND)]
    tasks += [admin_poller(port, deadline, counts), sampler(server.pid, deadline, max(seconds / 120, 1.0), samples)]
    await asyncio.gather(*tasks)
    return counts, samples


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def soak(server: ServerProcess, seconds: float, seed: int) -> dict[str, float | int]:
    server.start()
    try:
        time.sleep(0.5)
        fds_start = open_fds(server.pid)
        rss_start = rss_kib(server.pid)
        counts, samples = asyncio.run(load(server, seconds, seed))
        time.sleep(1.0)  # every load connection is closed: the server sees the EOFs
        fds_end = open_fds(server.pid)
        half = [sample for sample in samples if sample[0] >= seconds / 2]
        return {
            "seconds": round(seconds),
            "foreground_jobs": len(counts.latencies),
            "foreground_failed": counts.foreground_failed,
            "background_jobs": counts.background,
            "dropped_clients": counts.dropped_clients,
            "worker_sessions": counts.worker_sessions,
            "workers_left_mid_job": counts.left_mid_job,
            "errors": counts.errors,
            "p50_ms": round(1000 * percentile(counts.latencies, 0.5), 2),
            "p99_ms": round(1000 * percentile(counts.latencies, 0.99), 2),
            "max_ms": round(1000 * max(counts.latencies, default=float("nan")), 1),
            "rss_start_kib": rss_start,
            "rss_end_kib": samples[-1][1] if samples else 0,
            "rss_slope_kib_per_min": round(slope_per_minute([(t, rss) for t, rss, _ in half]), 1),
            "fds_slope_per_min": round(slope_per_minute([(t, fds) for t, _, fds in half]), 2),
            "fds_start": fds_start,
            "fds_max": max((fds for _, _, fds in samples), default=0),
            "fds_after": fds_end,
        }
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 minutes per server")
    parser.add_argument("--minutes", type=float, help="per server (default 30)")
    parser.add_argument("--servers", default="gearworks", help="comma-separated: gearworks, gearmand")
    parser.add_argument("--queue", default="memory", help="gearworks' queue: memory, sqlite (a temporary file), URL")
    parser.add_argument("--seed", type=int, default=4730)
    args = parser.parse_args()
    seconds = 60 * (args.minutes or (2.0 if args.quick else 30.0))
    results: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        queue = f"sqlite:///{tmp}/soak.db" if args.queue == "sqlite" else args.queue
        for name in args.servers.split(","):
            if name == "gearworks":
                results[f"gearworks {args.queue}"] = soak(gearworks_process("-q", queue), seconds, args.seed)
            elif name == "gearmand" and have("/usr/sbin/gearmand"):
                results["gearmand"] = soak(gearmand_process(), seconds, args.seed)
            print(f"  {name} done", file=sys.stderr, flush=True)
    report(results)


def report(results: dict[str, dict[str, float | int]]) -> None:
    columns = [
        ("foreground_jobs", "fg jobs"),
        ("foreground_failed", "fg failed"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("rss_start_kib", "RSS0 KiB"),
        ("rss_end_kib", "RSS KiB"),
        ("rss_slope_kib_per_min", "KiB/min"),
        ("fds_max", "fds max"),
        ("fds_slope_per_min", "fds/min"),
        ("fds_after", "fds after"),
    ]
    print(f"{'server':18}" + "".join(f"{title:>11}" for _, title in columns))
    for name, row in results.items():
        print(f"{name:18}" + "".join(f"{row[key]!s:>11}" for key, _ in columns))
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
