"""The connection keywords, spelled once: every client, worker and admin constructor takes them and turns them into
the same ConnectOptions; the TLS file keywords build a real SSLContext."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gearworks import Admin, AsyncAdmin, AsyncClient, AsyncWorker, Client, Worker
from gearworks.connection import ConnectOptions, connect_options
from gearworks.connection.options import ConnectionKeywords

FRONTS: list[Callable[..., Any]] = [Client, AsyncClient, Worker, AsyncWorker, Admin, AsyncAdmin]


def options_of(front: Callable[..., Any], **keywords: Any) -> ConnectOptions:
    made = front("127.0.0.1:4730", **keywords)
    if isinstance(made, Client | Admin):
        made.close()  # nothing was connected; the blocking client's selector is released
    options = made.connect_options
    assert isinstance(options, ConnectOptions)
    return options


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway self-signed certificate and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing (Debian package: openssl)")
    where = tmp_path_factory.mktemp("pki")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test",
         "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=where, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return where


def test_defaults_are_those_documented() -> None:
    assert connect_options({}, ConnectionKeywords, "Test") == ConnectOptions(
        connect_timeout=5.0, keepalive=True, keepalive_idle=60, tls=None
    )


@pytest.mark.parametrize("front", FRONTS, ids=lambda front: front.__name__)
def test_every_front_end_takes_the_connection_keywords(front: Callable[..., Any]) -> None:
    context = ssl.create_default_context()
    same: dict[str, Any] = {
        "connect_timeout": 1.5,
        "keepalive": False,
        "keepalive_idle": 7,
        "server_hostname": "jobs.example",
        "max_packet_size": 1024,
    }
    assert options_of(front, ssl_context=context, **same) == ConnectOptions(tls=context, **same)


@pytest.mark.parametrize("front", FRONTS, ids=lambda front: front.__name__)
def test_tls_files_build_an_ssl_context_that_trusts_the_ca(front: Callable[..., Any], pki: Path) -> None:
    cert = str(pki / "cert.pem")
    options = options_of(front, ca_file=cert, cert_file=cert, key_file=str(pki / "key.pem"))
    assert isinstance(options.tls, ssl.SSLContext)
    assert options.tls.verify_mode is ssl.CERT_REQUIRED
    assert options.tls.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize("front", [Client, AsyncClient, Admin, AsyncAdmin], ids=lambda front: front.__name__)
def test_clients_and_admin_clients_take_a_command_timeout(front: Callable[..., Any]) -> None:
    made = front("127.0.0.1:4730", command_timeout=2.5)
    timeout = made.timeout if front in (Admin, AsyncAdmin) else made._session.command_timeout
    assert timeout == 2.5


def test_an_ssl_context_wins_over_files() -> None:
    context = ssl.create_default_context()
    keywords: ConnectionKeywords = {"ssl_context": context, "ca_file": "/nonexistent.pem"}
    assert connect_options(keywords, ConnectionKeywords, "Test").tls is context


@pytest.mark.parametrize("front", FRONTS, ids=lambda front: front.__name__)
def test_a_misspelt_keyword_is_refused_naming_it(front: Callable[..., Any]) -> None:
    # A TypedDict-typed **options is only checked by type checkers: at run time the front-end checks it.
    with pytest.raises(TypeError, match=rf"{front.__name__}\(\) got an unexpected keyword argument 'timeout'"):
        front("127.0.0.1:4730", timeout=2)
