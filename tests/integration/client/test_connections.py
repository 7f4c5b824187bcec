"""Connection options of both clients against C gearmand: TLS through a socat terminator with a throwaway CA,
connect and command timeouts."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearworks.client import Client
from gearworks.connection import ServerAddress, tls_context
from gearworks.errors import ConnectionLost, NoServerAvailable
from tests.conftest import require
from tests.integration.client.conftest import FrontFactory
from tests.peers.raw_worker import RawJob, RawWorker
from tests.servers import ServerProcess, free_port, gearworks_process, wait_for_listen, wait_for_path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by it."""
    require("openssl", "openssl")
    where = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=where)  # fmt: skip
    (where / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=where)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.cnf", "-out", f"{name}.pem", cwd=where)  # fmt: skip
    return where


@pytest.fixture
def tls_gearmand(gearmand: ServerProcess, certificates: Path) -> Iterator[int]:
    """socat terminating TLS (client certificate required) in front of gearmand; yields its port."""
    require("socat", "socat")
    listen = (
        f"OPENSSL-LISTEN:0,bind=127.0.0.1,reuseaddr,fork,cert={certificates / 'server.pem'},"
        f"key={certificates / 'server.key'},cafile={certificates / 'ca.pem'},verify=1"
    )
    relay = subprocess.Popen(["socat", listen, f"TCP:127.0.0.1:{gearmand.port}"], stderr=subprocess.DEVNULL)
    try:
        yield wait_for_listen(relay)
    finally:
        relay.kill()
        relay.wait(10)


def echo(job: RawJob) -> bytes:
    return job.workload


def test_tls_with_ca_and_client_certificate_files(
    gearmand: ServerProcess, tls_gearmand: int, certificates: Path, front: FrontFactory
) -> None:
    client = front(
        f"127.0.0.1:{tls_gearmand}",
        ca_file=str(certificates / "ca.pem"),
        cert_file=str(certificates / "client.pem"),
        key_file=str(certificates / "client.key"),
    )
    payload = b"secret\0" * 100_000
    with RawWorker(gearmand.port, {b"echo": echo}):
        assert client.do("echo", payload) == payload
        assert client.echo(b"over tls") == b"over tls"


def test_tls_with_an_ssl_context_and_server_hostname(
    gearmand: ServerProcess, tls_gearmand: int, certificates: Path, front: FrontFactory
) -> None:
    context = tls_context(
        str(certificates / "ca.pem"), str(certificates / "client.pem"), str(certificates / "client.key")
    )
    client = front(f"localhost:{tls_gearmand}", ssl_context=context, server_hostname="localhost")
    with RawWorker(gearmand.port, {b"echo": echo}):
        assert client.do("echo", b"hi") == b"hi"


def test_tls_server_not_signed_by_the_trusted_ca_is_refused(
    tls_gearmand: int, certificates: Path, front: FrontFactory
) -> None:
    client = front(f"127.0.0.1:{tls_gearmand}", ca_file=str(certificates / "server.pem"))  # wrong trust anchor
    with pytest.raises((ConnectionLost, NoServerAvailable), match="CERTIFICATE_VERIFY_FAILED"):
        client.do("echo", b"hi")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections (kernel backlog) and never says anything."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_command_timeout_when_the_server_never_answers(silent_server: int, front: FrontFactory) -> None:
    client = front(f"127.0.0.1:{silent_server}", command_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="no reply"):
        client.do("echo", b"x")
    assert time.monotonic() - started < 10


def test_connect_timeout_when_the_tls_handshake_never_completes(silent_server: int, front: FrontFactory) -> None:
    client = front(f"127.0.0.1:{silent_server}", ca_file=None, ssl_context=tls_context(), connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises((ConnectionLost, NoServerAvailable), match=r"timed out|TimeoutError"):
        client.do("echo", b"x")
    assert time.monotonic() - started < 10


def test_unreachable_server_fails_fast_with_no_server_available(front: FrontFactory) -> None:
    client = front(f"127.0.0.1:{free_port()}")
    with pytest.raises(NoServerAvailable, match=r"Errno 111|refused"):
        client.do("echo", b"x")


def test_keepalive_is_set_on_client_sockets(gearmand: ServerProcess) -> None:
    with Client(gearmand.address, keepalive_idle=42) as client:
        assert client.echo(b"") == b""
        (connection,) = client._connections.values()
        assert connection.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 42
        assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_tls_directly_to_the_gearworks_server(certificates: Path, front: FrontFactory) -> None:
    server = gearworks_process(
        "--ssl",
        "--ssl-certificate",
        str(certificates / "server.pem"),
        "--ssl-key",
        str(certificates / "server.key"),
        "--ssl-ca-file",
        str(certificates / "ca.pem"),
    )
    try:
        server.start()
        client = front(
            server.address,
            ca_file=str(certificates / "ca.pem"),
            cert_file=str(certificates / "client.pem"),
            key_file=str(certificates / "client.key"),
        )
        assert client.echo(b"tls end to end") == b"tls end to end"
        assert client.submit_background("queued", b"x").server == ServerAddress.parse(server.address)
    finally:
        server.close()


def test_unix_socket_of_the_gearworks_server(tmp_path: Path, front: FrontFactory) -> None:
    path = tmp_path / "gearworks.sock"
    server = gearworks_process("--unix-socket", str(path))
    try:
        server.start()
        wait_for_path(path)
        client = front(str(path))
        with RawWorker(server.port, {b"echo": echo}):
            assert client.do("echo", b"over a unix socket") == b"over a unix socket"
    finally:
        server.close()
