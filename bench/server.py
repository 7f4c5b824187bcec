"""Job servers side by side: gearworks' server, C gearmand -t 1 and -t 4, and the Perl Gearman::Server.

The same clients and workers run against each server in one process run, servers interleaved within every
scenario (best of the rounds is kept): PHP's libgearman client + worker, Perl's Gearman::Client + Worker, a raw
socket Python driver (no client library: the floor the server allows), and gearworks' own blocking Client when it
is importable (the worker side then is the raw Python worker). Scenarios, in jobs/s: sequential foreground round
trips, pipelined foreground (one task set), pipelined background submissions, drain of queued background jobs by
two workers, 1 MiB foreground round trips. Then resident memory per queued 100-byte background job (gearworks vs
gearmand, at 100,000 jobs and, without --quick, 1,000,000), read once the server is quiet and 0.5 s after the
burst. Ends with one ``RESULT {json}`` line.

Usage: python bench/server.py [--quick] [--drivers php,perl,raw,gearworks] [--servers ...]
Internal: python bench/server.py --raw-worker HOST PORT FUNCTION (the raw Python worker process).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers starts the servers; tests/peers holds the PHP and Perl peers

from tests.servers import (  # noqa: E402
    ServerProcess,
    gearmand_process,
    gearworks_process,
    have,
    perl_gearmand_process,
    rss_kib,
)

from gearworks.protocol import Decoder, Packet, PacketType, encode  # noqa: E402

T = PacketType
PEERS = ROOT / "tests" / "peers"
HOST = "127.0.0.1"
SERVERS = ("gearworks", "gearmand-t4", "gearmand-t1", "perl")
SCENARIOS = ("sequential", "pipelined fg", "pipelined bg", "drain 2 workers", "1 MiB")
PEER_MODES = {"sequential": "seq", "pipelined fg": "pipe", "pipelined bg": "bg", "1 MiB": "seq"}
UNSUPPORTED = {
    # PHP's addServer waits for an OPTION_RES the Perl server never sends; gearworks' Client hangs there too.
    ("php", "perl"),
    ("gearworks", "perl"),
}
SIZES = {"sequential": 10, "pipelined fg": 10, "pipelined bg": 100, "drain 2 workers": 100, "1 MiB": 1 << 20}


def counts(quick: bool, server: str, driver: str) -> dict[str, int]:
    """Jobs per measurement; slow pairs (the Perl server, the Perl client) get fewer so --quick stays short."""
    base = {
        "sequential": 2000,
        "pipelined fg": 5000,
        "pipelined bg": 20000,
        "drain 2 workers": 20000,
        "1 MiB": 60,
    }
    if quick:
        base = {"sequential": 600, "pipelined fg": 2000, "pipelined bg": 5000, "drain 2 workers": 5000, "1 MiB": 15}
    slow = server == "perl" or driver == "perl"
    out = {name: max(count // 4, 10) if slow else count for name, count in base.items()}
    if driver == "php":
        out["1 MiB"] = 3  # PHP's client moves 1 MiB payloads at about 2 jobs/s on any server
    return out


def start_server(name: str) -> ServerProcess:
    if name == "gearworks":
        return gearworks_process().start()
    if name.startswith("gearmand"):
        return gearmand_process("-t", name.rsplit("t", 1)[1]).start()
    return perl_gearmand_process().start()


def available_servers(wanted: list[str]) -> list[str]:
    present = {
        "gearworks": True,
        "gearmand-t4": have("/usr/sbin/gearmand"),
        "gearmand-t1": have("/usr/sbin/gearmand"),
        "perl": have("/usr/bin/gearmand") and have("perl"),
    }
    return [name for name in wanted if present[name]]


# -- raw-socket Python driver ------------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_packets(sock: socket.socket, decoder: Decoder, wanted: Callable[[Packet], bool], count: int) -> None:
    """Read until ``count`` packets satisfying ``wanted`` arrived."""
    seen = 0
    while seen < count:
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        for item in decoder.feed(data):
            if isinstance(item, Packet) and wanted(item):
                seen += 1


def raw_worker(port: int, function: str) -> None:
    """Echo worker on the raw protocol: GRAB_JOB, WORK_COMPLETE + next GRAB in one write, PRE_SLEEP on NO_JOB."""
    sock = connect(port)
    sock.settimeout(None)
    decoder = Decoder()
    grab = encode(T.GRAB_JOB)
    sock.sendall(encode(T.CAN_DO, [function.encode()]) + grab)
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return
        out = []
        for item in decoder.feed(data):
            assert isinstance(item, Packet)
            if item.type is T.JOB_ASSIGN:
                out.append(encode(T.WORK_COMPLETE, [item.args[0], item.args[2]]))
                out.append(grab)
            elif item.type is T.NO_JOB:
                out.append(encode(T.PRE_SLEEP))
            elif item.type is T.NOOP:
                out.append(grab)
        if out:
            sock.sendall(b"".join(out))


def raw_client(port: int, scenario: str, function: str, count: int, size: int) -> float:
    """jobs/s of the scenario driven over one raw socket."""
    payload = b"x" * size
    decoder = Decoder()
    with connect(port) as sock:
        start = time.perf_counter()
        if scenario in ("sequential", "1 MiB"):
            request = encode(T.SUBMIT_JOB, [function.encode(), b"", payload])
            for _ in range(count):
                sock.sendall(request)
                read_packets(sock, decoder, lambda p: p.type is T.WORK_COMPLETE, 1)
        else:
            ptype = T.SUBMIT_JOB if scenario == "pipelined fg" else T.SUBMIT_JOB_BG
            reply = T.WORK_COMPLETE if ptype is T.SUBMIT_JOB else T.JOB_CREATED
            pipelined_submit(sock, decoder, encode(ptype, [function.encode(), b"", payload]), count, reply)
        return count / (time.perf_counter() - start)


def pipelined_submit(sock: socket.socket, decoder: Decoder, request: bytes, count: int, reply: PacketType) -> None:
    """Send ``count`` copies of ``request`` in batches, reading replies as they come, until all ``reply`` arrived."""
    batch = 1000
    seen = 0
    sent = 0
    while seen < count:
        if sent < count and sent - seen < 20 * batch:
            n = min(batch, count - sent)
            sock.sendall(request * n)
            sent += n
            continue
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        seen += sum(1 for item in decoder.feed(data) if isinstance(item, Packet) and item.type is reply)


def queue_background(port: int, function: str, count: int, size: int) -> None:
    with connect(port) as sock:
        request = encode(T.SUBMIT_JOB_BG, [function.encode(), b"", b"x" * size])
        pipelined_submit(sock, Decoder(), request, count, T.JOB_CREATED)


def queued(admin: socket.socket, function: str) -> int:
    """Total jobs of ``function`` in the server's admin ``status``."""
    admin.sendall(b"status\r\n")
    data = b""
    while not data.endswith(b".\n"):
        chunk = admin.recv(65536)
        if not chunk:
            raise ConnectionError("admin connection closed")
        data += chunk
    for line in data.split(b"\n"):
        fields = line.split(b"\t")
        if fields[0] == function.encode() and len(fields) >= 2:
            return int(fields[1])
    return 0


# -- drivers ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Driver:
    """One client library and its worker. ``client`` returns jobs/s; ``worker`` is the worker process's argv."""

    name: str
    client: Callable[[int, str, str, int, int], float]
    worker: Callable[[int, str], list[str]]


def peer_client(argv0: list[str]) -> Callable[[int, str, str, int, int], float]:
    def run(port: int, scenario: str, function: str, count: int, size: int) -> float:
        argv = [*argv0, HOST, str(port), PEER_MODES[scenario], function, str(count), str(size)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv0[1]} {scenario} failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        return count / max(float(report["seconds"]), 1e-9)

    return run


def peer_worker(argv0: list[str]) -> Callable[[int, str], list[str]]:
    """The argv of a peer's echo worker for (port, function)."""

    def argv(port: int, function: str) -> list[str]:
        return [*argv0, HOST, str(port), function, "0", "echo"]

    return argv


def raw_worker_argv(port: int, function: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--raw-worker", HOST, str(port), function]


def gearworks_client() -> Callable[[int, str, str, int, int], float] | None:
    """gearworks' own blocking Client, when the client package is present (it is developed alongside)."""
    try:
        from gearworks.client import Client
    except ImportError:
        return None

    def run(port: int, scenario: str, function: str, count: int, size: int) -> float:
        payload = b"x" * size
        with Client(f"{HOST}:{port}") as client:
            start = time.perf_counter()
            if scenario in ("sequential", "1 MiB"):
                for _ in range(count):
                    client.do(function, payload)
            elif scenario == "pipelined fg":
                tasks = client.task_set()
                for _ in range(count):
                    tasks.add(function, payload)
                tasks.wait(300)
            else:
                client.wait([client.submit(function, payload, background=True) for _ in range(count)], 300)
            return count / (time.perf_counter() - start)

    return run


def drivers(wanted: list[str]) -> list[Driver]:
    out = []
    php_ok = have("php") and b"gearman" in subprocess.run(["php", "-m"], capture_output=True, check=False).stdout
    perl_ok = have("perl") and not subprocess.run(["perl", "-MGearman::Client", "-e1"], check=False).returncode
    for name in wanted:
        if name == "php" and php_ok:
            worker = ["php", str(PEERS / "php_farm_worker.php")]
            out.append(Driver("php", peer_client(["php", str(PEERS / "php_client.php")]), peer_worker(worker)))
        elif name == "perl" and perl_ok:
            worker = ["perl", str(PEERS / "perl_farm_worker.pl")]
            out.append(Driver("perl", peer_client(["perl", str(PEERS / "perl_client.pl")]), peer_worker(worker)))
        elif name == "raw":
            out.append(Driver("raw", raw_client, raw_worker_argv))
        elif name == "gearworks":
            client = gearworks_client()
            if client is not None:
                out.append(Driver("gearworks", client, raw_worker_argv))
    return out


# -- measurements ----------------------------------------------------------------------------------------------


def wait_for_worker(port: int, function: str, workers: list[subprocess.Popen[bytes]], count: int = 1) -> None:
    """Until ``count`` workers registered ``function`` (status WORKERS column)."""
    deadline = time.monotonic() + 15
    with connect(port) as admin:
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in workers):
                raise RuntimeError("a worker exited early")
            admin.sendall(b"status\r\n")
            data = b""
            while not data.endswith(b".\n"):
                data += admin.recv(65536)
            for line in data.split(b"\n"):
                fields = line.split(b"\t")
                if fields[0] == function.encode() and len(fields) == 4 and int(fields[3]) >= count:
                    return
            time.sleep(0.02)
    raise TimeoutError(f"worker for {function} did not register")


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


_sequence = iter(range(1, 1 << 30))


def measure(server: ServerProcess, driver: Driver, scenario: str, count: int) -> float:
    """jobs/s of one scenario, one driver, one server; a fresh function name each time keeps runs apart."""
    function = f"b{next(_sequence)}"
    size = SIZES[scenario]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        if scenario == "drain 2 workers":
            queue_background(server.port, function, count, size)
            with connect(server.port) as admin:
                start = time.perf_counter()
                for _ in range(2):
                    argv = driver.worker(server.port, function)
                    workers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                deadline = time.monotonic() + 120
                while queued(admin, function):
                    if any(proc.poll() is not None for proc in workers):
                        raise RuntimeError(f"{driver.name} worker exited during the drain")
                    if time.monotonic() > deadline:
                        raise RuntimeError("drain did not finish in 120 s")
                    time.sleep(0.005)
                return count / (time.perf_counter() - start)
        if scenario != "pipelined bg":
            argv = driver.worker(server.port, function)
            workers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for_worker(server.port, function, workers)
        return driver.client(server.port, scenario, function, count, size)
    finally:
        stop(workers)


QUIET_AFTER = 3.0
"""Seconds after the last submission when the "quiet" memory is read: gearworks gives back the free heap its
submission burst left within about two seconds of its last read (``server/heap.py``)."""


def memory_per_job(name: str, count: int) -> dict[str, float]:
    """Bytes of resident memory per queued 100-byte background job, on a fresh server: 0.5 s after the last
    JOB_CREATED (``busy``) and ``QUIET_AFTER`` seconds after it (``quiet``: what holding the queue costs)."""
    server = start_server(name)
    try:
        before = rss_kib(server.pid) * 1024
        queue_background(server.port, "mem", count, 100)
        done = time.monotonic()
        time.sleep(0.5)
        busy = (rss_kib(server.pid) * 1024 - before) / count
        time.sleep(max(done + QUIET_AFTER - time.monotonic(), 0.0))
        return {"busy": busy, "quiet": (rss_kib(server.pid) * 1024 - before) / count}
    finally:
        server.close()


# -- report ----------------------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    return "-" if not ours or not theirs else f"{ours / theirs:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, two rounds, 100k memory jobs")
    parser.add_argument("--drivers", default="php,perl,raw,gearworks")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 2 with --quick, else 3)")
    parser.add_argument("--raw-worker", nargs=3, metavar=("HOST", "PORT", "FUNCTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        raw_worker(int(args.raw_worker[1]), args.raw_worker[2])
        return 0
    rounds = args.rounds or (2 if args.quick else 3)
    server_names = available_servers(args.servers.split(","))
    driver_list = drivers(args.drivers.split(","))
    if args.quick:
        # Under a minute: PHP (the reference pair) and the raw driver (the server-bound floor, and the only
        # one that also runs against the Perl server everywhere); PHP's client moves 1 MiB payloads very slowly.
        keep = {
            "php": ("sequential", "pipelined fg", "pipelined bg", "drain 2 workers"),
            "perl": ("sequential",),
            "raw": ("sequential", "pipelined bg", "drain 2 workers", "1 MiB"),
            "gearworks": ("sequential",),
        }
    else:
        keep = {driver.name: SCENARIOS for driver in driver_list}
    servers: dict[str, ServerProcess] = {}
    results: dict[str, dict[str, float | None]] = {}
    started = time.monotonic()
    try:
        for name in server_names:
            servers[name] = start_server(name)
        for scenario in SCENARIOS:
            for driver in driver_list:
                if scenario not in keep.get(driver.name, ()):
                    continue
                row = f"{scenario} / {driver.name}"
                best: dict[str, float | None] = dict.fromkeys(server_names)
                for round_number in range(rounds):
                    # Interleaved: every server once per round, the order rotating so none is always first.
                    shift = round_number % len(server_names)
                    for name in server_names[shift:] + server_names[:shift]:
                        if (driver.name, name) in UNSUPPORTED:
                            continue
                        count = counts(args.quick, name, driver.name)[scenario]
                        try:
                            rate = measure(servers[name], driver, scenario, count)
                        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                            print(f"# {row} on {name}: {exc}", file=sys.stderr)
                            continue
                        best[name] = max(best[name] or 0.0, rate)
                        print(f"# {row} on {name}: {rate:,.0f} jobs/s", file=sys.stderr, flush=True)
                results[row] = best
        memory_counts = (100_000,) if args.quick else (100_000, 1_000_000)
        memory = {
            count: {name: memory_per_job(name, count) for name in ("gearworks", "gearmand-t4") if name in servers}
            for count in memory_counts
        }
    finally:
        for server in servers.values():
            server.close()
    elapsed = time.monotonic() - started

    header = f"{'scenario / driver':<30}" + "".join(f"{name:>13}" for name in server_names)
    header += f"{'vs -t4':>9}{'vs -t1':>9}{'vs perl':>9}"
    print(f"jobs/s, best of {rounds} interleaved round(s); {os.cpu_count()} CPUs; uvloop: {have_uvloop()}")
    print(header)
    print("-" * len(header))
    for row, values in results.items():
        line = f"{row:<30}" + "".join(f"{fmt(values.get(name)):>13}" for name in server_names)
        ours = values.get("gearworks")
        line += f"{ratio(ours, values.get('gearmand-t4')):>9}{ratio(ours, values.get('gearmand-t1')):>9}"
        line += f"{ratio(ours, values.get('perl')):>9}"
        print(line)
    for count, by_server in memory.items():
        for name, per_job in by_server.items():
            print(
                f"memory, {count:,} queued 100-byte bg jobs, {name}: {per_job['quiet']:,.0f} bytes/job "
                f"({per_job['busy']:,.0f} 0.5 s after the burst)"
            )
    print(f"({elapsed:.1f}s)")
    payload = {
        "quick": args.quick,
        "rounds": rounds,
        "jobs_per_second": results,
        "memory_bytes_per_job": memory,
        "seconds": round(elapsed, 1),
    }
    print("RESULT " + json.dumps(payload, sort_keys=True))
    return 0


def have_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


if __name__ == "__main__":
    sys.exit(main())
