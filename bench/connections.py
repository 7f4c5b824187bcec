"""Many idle connections on one server: memory per idle connection, and the job rate while they are open.

For each server (gearworks, C gearmand): foreground jobs/s with the server otherwise idle, then with N idle
connections open (10,000 by default; held by a helper process so this one's descriptors and GIL stay free), then
idle again; the two idle runs are averaged (interleaved reference). Jobs are round trips of a raw client and a raw
worker over loopback, pipelined 32 deep. Reported: the loaded/idle ratio (target >= 0.8) and the server's RSS
growth per idle connection. gearworks raises its open-files limit to the hard limit at start; the helper does too.

Usage: python bench/connections.py [--quick] [--connections N] [--servers gearworks,gearmand]
Internal: python bench/connections.py --hold PORT N (the helper: opens N connections, waits for stdin to close).
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers starts the servers

from tests.peers.raw_worker import serve_echo  # noqa: E402
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
FUNCTION = b"conn-bench"
DEPTH = 32


def raise_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def hold(port: int, count: int) -> None:
    """The helper: open ``count`` idle connections, say ``ready``, keep them until stdin closes."""
    raise_limit()
    held = []
    for _ in range(count):
        for attempt in range(50):
            try:
                held.append(socket.create_connection((HOST, port), timeout=10))
                break
            except OSError:
                time.sleep(0.01 * (attempt + 1))
    print(f"ready {len(held)}", flush=True)
    sys.stdin.read()
    for sock in held:
        sock.close()


def worker(port: int, stop: threading.Event) -> None:
    """Raw echo worker of FUNCTION (``serve_echo``)."""
    with socket.create_connection((HOST, port), timeout=1) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        serve_echo(sock, FUNCTION, stop)


def rate(port: int, seconds: float) -> float:
    """Foreground jobs/s over ``seconds``, DEPTH jobs in flight on one client connection."""
    submit = encode(T.SUBMIT_JOB, [FUNCTION, b"", b"x" * 100])
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        decoder = Decoder()
        sock.sendall(submit * DEPTH)
        done = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the client")
            items = decoder.feed(data)
            completed = sum(1 for item in items if isinstance(item, Packet) and item.type is T.WORK_COMPLETE)
            done += completed
            if completed:
                sock.sendall(submit * completed)
        return done / (time.perf_counter() - started)


def measure(server: ServerProcess, connections: int, seconds: float) -> dict[str, float]:
    stop = threading.Event()
    thread = threading.Thread(target=worker, args=(server.port, stop), daemon=True)
    thread.start()
    try:
        rate(server.port, 1.0)  # warm up
        idle_before = rate(server.port, seconds)
        fds_before, rss_before = open_fds(server.pid), rss_kib(server.pid)
        helper = subprocess.Popen(
            [sys.executable, __file__, "--hold", str(server.port), str(connections)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert helper.stdout is not None
        assert helper.stdin is not None
        try:
            opened = int(helper.stdout.readline().split()[1])
            deadline = time.monotonic() + 60
            while open_fds(server.pid) < fds_before + opened and time.monotonic() < deadline:
                time.sleep(0.1)
            accepted = open_fds(server.pid) - fds_before
            time.sleep(0.5)
            rss_loaded = rss_kib(server.pid)
            loaded = rate(server.port, seconds)
        finally:
            helper.stdin.close()
            helper.wait(60)
        time.sleep(1.0)
        idle_after = rate(server.port, seconds)
    finally:
        stop.set()
        thread.join(5)
    idle = (idle_before + idle_after) / 2
    return {
        "connections": opened,
        "accepted": accepted,
        "idle_jobs_per_s": round(idle),
        "loaded_jobs_per_s": round(loaded),
        "ratio": round(loaded / idle, 3),
        "bytes_per_idle_connection": round((rss_loaded - rss_before) * 1024 / max(accepted, 1)),
        "rss_idle_kib": rss_before,
        "rss_loaded_kib": rss_loaded,
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--hold":
        hold(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 connections, 2 s per rate")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--servers", default="gearworks,gearmand")
    args = parser.parse_args()
    connections = args.connections or (2_000 if args.quick else 10_000)
    seconds = 2.0 if args.quick else 5.0
    raise_limit()
    results: dict[str, dict[str, float]] = {}
    for name in args.servers.split(","):
        if name == "gearworks":
            server = gearworks_process()
        elif name == "gearmand" and have("/usr/sbin/gearmand"):
            server = gearmand_process("-b", "4096")  # gearmand's default backlog of 32 drops bursts of connects
        else:
            continue
        try:
            server.start()
            results[name] = measure(server, connections, seconds)
        finally:
            server.close()
        print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
    header = ["server", "idle conns", "idle jobs/s", "loaded jobs/s", "ratio", "B/idle conn"]
    print(f"{header[0]:12}" + "".join(f"{h:>15}" for h in header[1:]))
    for name, row in results.items():
        values = [row["accepted"], row["idle_jobs_per_s"], row["loaded_jobs_per_s"], row["ratio"],
                  row["bytes_per_idle_connection"]]  # fmt: skip
        print(f"{name:12}" + "".join(f"{value:>15,}" for value in values))
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
