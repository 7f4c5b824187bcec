"""The ``gearworks serve`` process: listeners (port 0, Unix socket, TLS), signals, admin shutdown, pid file."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gearworks.protocol import RES, Decoder, Packet, PacketType, encode
from tests.conftest import ServerFactory, require
from tests.integration.server_wire import Wire
from tests.servers import ServerProcess

T = PacketType
SERVE = [sys.executable, "-m", "gearworks.cli.main", "serve"]


def wait_for_exit(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_port_zero_logs_the_chosen_port(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    proc = subprocess.Popen([*SERVE, "-L", "127.0.0.1", "-p", "0", "-l", str(log)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        match = None
        while match is None and time.monotonic() < deadline:
            time.sleep(0.05)
            match = re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", log.read_text() if log.exists() else "")
        assert match is not None, "no listening line logged"
        with Wire(int(match.group(1))) as wire:
            assert wire.request(T.ECHO_REQ, b"hi") == Packet(T.ECHO_RES, (b"hi",), RES)
        proc.send_signal(signal.SIGTERM)
        assert wait_for_exit(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_sigterm_stops_cleanly_and_removes_the_pid_file(
    gearworks_server_factory: ServerFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "gw.pid"
    server = gearworks_server_factory("-P", str(pid_file))
    assert pid_file.read_text().strip() == str(server.pid)
    with Wire(server.port) as client:
        client.request(T.SUBMIT_JOB_BG, b"f", b"", b"queued")
        assert server.stop(signal.SIGTERM) == 0
    assert not pid_file.exists()


def test_sigint_stops_cleanly(gearworks_server: ServerProcess) -> None:
    assert gearworks_server.stop(signal.SIGINT) == 0


def test_admin_shutdown_from_loopback(gearworks_server: ServerProcess) -> None:
    with Wire(gearworks_server.port) as admin:
        admin.send_raw(b"shutdown\r\n")
        assert admin.closed_by_peer() == b"OK\n"
    assert gearworks_server.proc is not None
    assert wait_for_exit(gearworks_server.proc) == 0


def test_admin_allow_list_replaces_the_loopback_default(
    gearworks_server_factory: ServerFactory, tmp_path: Path
) -> None:
    """With ``--admin-allow``, a loopback peer (as one behind a local proxy) outside the list may read but not
    change; a Unix-socket peer still may."""
    sock_path = str(tmp_path / "gw.sock")
    server = gearworks_server_factory("--admin-allow", "192.0.2.0/24", "--unix-socket", sock_path)
    with Wire(server.port) as admin:
        assert admin.admin(b"maxqueue f 3\n").startswith(b"ERR PERMISSION_DENIED ")
        assert admin.admin(b"shutdown\n").startswith(b"ERR UNKNOWN_COMMAND ")
        assert admin.admin(b"status\n") == b".\n"
    with Wire(path=sock_path) as local:
        assert local.admin(b"maxqueue f 3\n") == b"OK\r\n"
    assert server.proc is not None
    assert server.proc.poll() is None


def test_admin_allow_refuses_a_bad_network() -> None:
    proc = subprocess.run(
        [*SERVE, "-L", "127.0.0.1", "-p", "0", "--admin-allow", "nope"], capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 1
    assert b"--admin-allow 'nope'" in proc.stderr


@pytest.mark.parametrize("how", ["admin", "signal"])
def test_graceful_shutdown_waits_for_jobs_then_exits(gearworks_server: ServerProcess, how: str) -> None:
    port = gearworks_server.port
    assert gearworks_server.proc is not None
    with Wire(port) as client, Wire(port) as worker:
        handle = client.request(T.SUBMIT_JOB, b"f", b"", b"x").args[0]
        if how == "admin":
            with Wire(port) as admin:
                admin.send_raw(b"shutdown graceful\n")
                assert admin.closed_by_peer() == b"OK\n"
        else:
            gearworks_server.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert gearworks_server.proc.poll() is None
        worker.send(T.CAN_DO, b"f")
        assert worker.request(T.GRAB_JOB).type is T.JOB_ASSIGN
        worker.send(T.WORK_COMPLETE, handle, b"done")
        assert client.recv() == [Packet(T.WORK_COMPLETE, (handle, b"done"), RES)]
    assert wait_for_exit(gearworks_server.proc) == 0


def test_unix_socket_listener(gearworks_server_factory: ServerFactory, tmp_path: Path) -> None:
    path = str(tmp_path / "gearman.sock")
    server = gearworks_server_factory("--unix-socket", path)
    with Wire(path=path) as unix_client, Wire(server.port) as tcp_worker:
        handle = unix_client.request(T.SUBMIT_JOB, b"f", b"", b"over unix").args[0]
        tcp_worker.send(T.CAN_DO, b"f")
        assert tcp_worker.request(T.GRAB_JOB).args == (handle, b"f", b"over unix")
        assert unix_client.admin(b"workers\n").count(b"unix - :") == 1
        unix_client.send_raw(b"shutdown\n")
        assert unix_client.closed_by_peer() == b"OK\n"
    assert server.proc is not None
    assert wait_for_exit(server.proc) == 0
    assert not os.path.exists(path)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    require("openssl", "openssl")
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=gearworks test CA", cwd=d)  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", "san.cnf", cwd=d)  # fmt: skip
    return d


def tls_exchange(port: int, context: ssl.SSLContext, data: bytes) -> list[Packet | bytes]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(data)
        decoder = Decoder(text=True)
        items: list[Packet | bytes] = []
        while len(items) < 2:
            chunk = tls.recv(65536)
            assert chunk
            items.extend(decoder.feed(chunk))
        return items


def tls_server(pki: Path, *extra: str) -> ServerProcess:
    argv = [*SERVE, "-L", "127.0.0.1", "-p", "{port}", "--ssl", "--ssl-certificate", str(pki / "server.pem"),
            "--ssl-key", str(pki / "server.key"), *extra]  # fmt: skip
    return ServerProcess(argv, 0, pki / f"server-{len(list(pki.glob('server-*.log')))}.log").start(10)


def test_tls_listener(pki: Path) -> None:
    server = tls_server(pki)
    try:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        items = tls_exchange(server.port, context, encode(T.ECHO_REQ, [b"secret"]) + b"version\n")
        assert items[0] == Packet(T.ECHO_RES, (b"secret",), RES)
        assert items[1] == b"OK 1.1.20+gearworks." + items[1].split(b"gearworks.")[1]  # type: ignore[union-attr]
    finally:
        server.close()


def test_http_listener_uses_tls_with_the_servers_ssl_options(pki: Path) -> None:
    server = tls_server(pki, "--http-port", "0")
    try:
        https = server.announced("https")
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with (
            socket.create_connection(("127.0.0.1", https), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /api/workers HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert reply.endswith(b"\r\n\r\n[]")
    finally:
        server.close()


def test_tls_with_ca_file_requires_client_certificates(pki: Path) -> None:
    server = tls_server(pki, "--ssl-ca-file", str(pki / "ca.pem"))
    try:
        with_cert = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with_cert.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
        items = tls_exchange(server.port, with_cert, encode(T.ECHO_REQ, [b"a"]) + encode(T.ECHO_REQ, [b"b"]))
        assert [item.args for item in items] == [(b"a",), (b"b",)]  # type: ignore[union-attr]
        without = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            tls_exchange(server.port, without, encode(T.ECHO_REQ, [b"a"]) * 2)
    finally:
        server.close()


def test_ssl_without_certificates_refuses_to_start() -> None:
    proc = subprocess.run(
        [
            *SERVE,
            "-L",
            "127.0.0.1",
            "-p",
            "0",
            "--ssl",
            "--ssl-certificate",
            "/nonexistent.pem",
            "--ssl-key",
            "/nonexistent.key",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 1
    assert b"cannot start" in proc.stderr


def test_gearmand_options_accepted_and_worker_wakeup_limit(gearworks_server_factory: ServerFactory) -> None:
    server = gearworks_server_factory(
        "-w", "1", "-R", "-t", "4", "-q", "builtin", "--keepalive", "--keepalive-idle", "30",
        "--keepalive-interval", "5", "--keepalive-count", "3", "--verbose", "debug", "-b", "16",
    )  # fmt: skip
    with Wire(server.port) as client, Wire(server.port) as first, Wire(server.port) as second:
        for worker in (first, second):
            worker.send(T.CAN_DO, b"w")
            worker.send(T.PRE_SLEEP)
            assert worker.request(T.ECHO_REQ, b"sync").type is T.ECHO_RES
        client.request(T.SUBMIT_JOB_BG, b"w", b"", b"1")
        assert first.recv() == [Packet(T.NOOP, (), RES)]
        assert second.silent(0.2)
        assert client.admin(b"verbose\n") == b"OK DEBUG\n"
    assert "accepted" in server.log()


def test_unknown_queue_type_and_long_prefix_refuse_to_start() -> None:
    for options in (["-q", "mysql"], ["--job-handle-prefix", "p" * 60]):
        proc = subprocess.run(
            [*SERVE, "-L", "127.0.0.1", "-p", "0", *options], capture_output=True, timeout=20, check=False
        )
        assert proc.returncode != 0
