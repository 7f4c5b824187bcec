"""Peers we did not write against gearworks' server: the gearman and gearadmin tools, PHP's gearman extension,
Perl Gearman::Client / Gearman::Worker. Scripts live in tests/peers/."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerFactory, require
from tests.servers import ServerProcess

PEERS = Path(__file__).resolve().parent.parent / "peers"
HOST = "127.0.0.1"


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Background peer processes, killed after the test."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def start(started: list[subprocess.Popen[bytes]], *argv: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.append(proc)
    return proc


def run(*argv: str, stdin: bytes = b"", check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, proc
    return proc


def peer_json(*argv: str, check: bool = True) -> dict[str, Any]:
    proc = run(*argv, check=check)
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


def php(*args: str) -> list[str]:
    require("php", "php-cli php-gearman")
    if b"gearman" not in subprocess.run(["php", "-m"], capture_output=True, check=False).stdout:
        pytest.skip("PHP gearman extension missing (Debian package php-gearman)")
    return ["php", str(PEERS / args[0]), *args[1:]]


def perl(*args: str) -> list[str]:
    require("perl", "perl")
    if subprocess.run(["perl", "-MGearman::Client", "-e1"], capture_output=True, check=False).returncode:
        pytest.skip("Perl Gearman::Client missing (Debian package libgearman-client-perl)")
    return ["perl", str(PEERS / args[0]), *args[1:]]


def wait_for_workers(port: int, function: str, count: int = 1) -> None:
    """Block until ``count`` workers registered ``function`` (status WORKERS column)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = run("gearadmin", "-h", HOST, "-p", str(port), "--status").stdout.decode()
        for line in out.splitlines():
            fields = line.split("\t")
            if fields[0] == function and len(fields) == 4 and int(fields[3]) >= count:
                return
        time.sleep(0.05)
    raise TimeoutError(f"no worker for {function}")


# -- gearman / gearadmin --------------------------------------------------------------------------------------


def test_gearman_cli_worker_and_client(gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]]) -> None:
    require("gearman", "gearman-tools")
    port = str(gearworks_server.port)
    start(workers, "gearman", "-h", HOST, "-p", port, "-w", "-f", "rev", "-c", "3", "--", "rev")
    wait_for_workers(gearworks_server.port, "rev")
    assert run("gearman", "-h", HOST, "-p", port, "-f", "rev", "hello").stdout.strip() == b"olleh"
    assert run("gearman", "-h", HOST, "-p", port, "-f", "rev", stdin=b"abc").stdout.strip() == b"cba"
    assert run("gearman", "-h", HOST, "-p", port, "-I", "-f", "rev", "high").stdout.strip() == b"hgih"
    workers[0].wait(10)
    assert run("gearman", "-h", HOST, "-p", port, "-b", "-f", "later", "x").returncode == 0


def gearadmin_outputs(port: int) -> list[tuple[str, str]]:
    p = str(port)
    for payload in ("one", "two"):
        run("gearman", "-h", HOST, "-p", p, "-b", "-f", "adm", payload)
    run("gearman", "-h", HOST, "-p", p, "-b", "-u", "myunique", "-f", "adm2", "three")
    out = []
    for option in (
        ["--status"],
        ["--priority-status"],
        ["--show-jobs"],
        ["--show-unique-jobs"],
        ["--create-function", "newfn"],
        ["--status"],
        ["--drop-function", "newfn"],
        ["--drop-function", "nosuchfn"],
        ["--cancel-job", "H:vm:9999"],
        ["--server-verbose"],
        ["--server-version"],
        ["--getpid"],
        ["--workers"],
    ):
        proc = run("gearadmin", "-h", HOST, "-p", p, *option, check=False)
        out.append((" ".join(option), proc.stdout.decode() + proc.stderr.decode()))
    return out


def normalise(text: str) -> str:
    text = re.sub(r"^\d+\n$", "PID\n", text)
    text = re.sub(r"^1\.1\.20\S*\n$", "VERSION\n", text)
    text = re.sub(r"(?m)^\d+ 127", "FD 127", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    return "\n".join(sorted(text.split("\n")))


def test_gearadmin_sees_the_same_as_with_gearmand(
    gearworks_server_factory: ServerFactory, gearmand_factory: ServerFactory
) -> None:
    require("gearadmin", "gearman-tools")
    ours = gearadmin_outputs(gearworks_server_factory("--verbose", "INFO").port)
    theirs = gearadmin_outputs(gearmand_factory().port)
    assert [(name, normalise(text)) for name, text in ours] == [(name, normalise(text)) for name, text in theirs]
    assert dict(ours)["--status"].startswith(("adm\t2\t0\t0\n", "adm2\t1\t0\t0\n"))


def test_gearadmin_cancel_job(gearworks_server: ServerProcess) -> None:
    require("gearadmin", "gearman-tools")
    p = str(gearworks_server.port)
    handle = run("gearman", "-h", HOST, "-p", p, "-b", "-f", "c", "x").stdout
    assert handle == b""  # the CLI prints nothing for a background job; the first handle is H:vm:1
    assert run("gearadmin", "-h", HOST, "-p", p, "--cancel-job", "H:vm:1").stdout == b"OK\n"
    # gearmand would still list c with zeros; gearworks forgets a function with no job and no worker (README).
    assert run("gearadmin", "-h", HOST, "-p", p, "--status").stdout == b".\n"


# -- PHP --------------------------------------------------------------------------------------------------------


def test_php_client_and_worker(gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]]) -> None:
    port = str(gearworks_server.port)
    start(workers, *php("php_farm_worker.php", HOST, port, "rev", "0"))
    wait_for_workers(gearworks_server.port, "rev")
    assert peer_json(*php("php_client.php", HOST, port, "one", "rev", "1", "0", "hello"))["result"] == "olleh"
    assert peer_json(*php("php_client.php", HOST, port, "pipe", "rev", "200", "10"))["result"] == 200
    assert peer_json(*php("php_client.php", HOST, port, "seq", "rev", "50", "10"))["failed"] == 0
    assert peer_json(*php("php_client.php", HOST, port, "bg", "rev", "100", "10"))["failed"] == 0


def test_php_status_data_and_job_status(
    gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]]
) -> None:
    port = str(gearworks_server.port)
    handle, status = peer_json(*php("php_client.php", HOST, port, "status", "queued", "1", "3"))["result"]
    assert handle.startswith("H:vm:")
    assert status == [True, False, 0, 0]
    start(workers, *php("php_farm_worker.php", HOST, port, "st", "1", "status"))  # WORK_DATA "part", then the result
    wait_for_workers(gearworks_server.port, "st")
    assert peer_json(*php("php_client.php", HOST, port, "one", "st", "1", "0", "abc"))["result"] == "partcba"


@pytest.mark.parametrize("mode", ["fail", "exception"])
def test_php_failures_reach_the_php_client(
    gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]], mode: str
) -> None:
    port = str(gearworks_server.port)
    start(workers, *php("php_farm_worker.php", HOST, port, "bad", "1", mode))
    wait_for_workers(gearworks_server.port, "bad")
    result = peer_json(*php("php_client.php", HOST, port, "one", "bad", "1", "0", "x"), check=False)
    assert result["failed"] == 1


def test_php_worker_timeout_in_seconds_fails_the_job(
    gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]]
) -> None:
    port = str(gearworks_server.port)
    start(workers, *php("php_farm_worker.php", HOST, port, "slow", "1", "sleep", "1"))
    wait_for_workers(gearworks_server.port, "slow")
    started = time.monotonic()
    result = peer_json(*php("php_client.php", HOST, port, "one", "slow", "1", "0", "x"), check=False)
    assert result["failed"] == 1
    assert 0.9 <= time.monotonic() - started < 2.9


# -- Perl -------------------------------------------------------------------------------------------------------


def test_perl_client_and_worker(gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]]) -> None:
    port = str(gearworks_server.port)
    start(workers, *perl("perl_farm_worker.pl", HOST, port, "prev", "0"))
    wait_for_workers(gearworks_server.port, "prev")
    assert peer_json(*perl("perl_client.pl", HOST, port, "one", "prev", "1", "0", "hello"))["result"] == "olleh"
    assert peer_json(*perl("perl_client.pl", HOST, port, "pipe", "prev", "100", "10"))["result"] == 100
    assert peer_json(*perl("perl_client.pl", HOST, port, "bg", "prev", "20", "10"))["failed"] == 0


def test_perl_failure_and_status(gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]]) -> None:
    port = str(gearworks_server.port)
    handle, known, running = peer_json(*perl("perl_client.pl", HOST, port, "status", "pq", "1", "3"))["result"]
    assert (handle.endswith("//H:vm:1"), known, running) == (True, 1, 0)  # Perl prefixes the server address
    start(workers, *perl("perl_farm_worker.pl", HOST, port, "pfail", "1", "fail"))
    wait_for_workers(gearworks_server.port, "pfail")
    assert peer_json(*perl("perl_client.pl", HOST, port, "one", "pfail", "1", "0", "x"), check=False)["failed"] == 1


def test_perl_worker_whose_handler_dies_keeps_serving(
    gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]]
) -> None:
    # Gearman::Worker sends WORK_EXCEPTION then WORK_FAIL; an ERROR for the WORK_FAIL kills it (#13 item 13).
    port = str(gearworks_server.port)
    proc = start(workers, *perl("perl_farm_worker.pl", HOST, port, "pdies", "0", "dies"))
    wait_for_workers(gearworks_server.port, "pdies")
    for _ in range(2):
        assert peer_json(*perl("perl_client.pl", HOST, port, "one", "pdies", "1", "0", "die"), check=False)["failed"]
        assert peer_json(*perl("perl_client.pl", HOST, port, "one", "pdies", "1", "0", "next"))["result"] == "txen"
    assert proc.poll() is None


def test_perl_admin_jobs_and_clients(gearworks_server: ServerProcess) -> None:
    port = str(gearworks_server.port)
    run("gearman", "-h", HOST, "-p", port, "-b", "-u", "uq1", "-f", "pf", "x")
    jobs = peer_json(*perl("perl_client.pl", HOST, port, "jobs", "-", "0", "0"))["result"]
    assert jobs == [{f"{HOST}:{port}": {"pf": {"address": "-", "key": "uq1", "listeners": "0"}}}]
    clients = peer_json(*perl("perl_client.pl", HOST, port, "clients", "-", "0", "0"))["result"]
    assert list(clients[0]) == [f"{HOST}:{port}"]


# -- mixed ------------------------------------------------------------------------------------------------------


def test_cli_worker_serves_php_and_perl_clients(
    gearworks_server: ServerProcess, workers: list[subprocess.Popen[bytes]]
) -> None:
    require("gearman", "gearman-tools")
    port = str(gearworks_server.port)
    start(workers, "gearman", "-h", HOST, "-p", port, "-w", "-f", "mixed", "--", "rev")
    wait_for_workers(gearworks_server.port, "mixed")
    assert peer_json(*php("php_client.php", HOST, port, "one", "mixed", "1", "0", "gear"))["result"].strip() == "raeg"
    assert peer_json(*perl("perl_client.pl", HOST, port, "one", "mixed", "1", "0", "perl"))["result"].strip() == "lrep"
