"""How to connect: timeouts, keepalive, TLS and the packet size limit, shared by every driver.

The keywords are spelled once, here (``ConnectionKeywords``, ``RequestKeywords``): every client, worker and admin
constructor takes them and turns them into one ``ConnectOptions`` with ``connect_options``."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import TypedDict

from gearworks.protocol import DEFAULT_MAX_PACKET_SIZE

__all__ = ["ConnectOptions", "ConnectionKeywords", "RequestKeywords", "connect_options", "tls_context"]


def tls_context(
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    *,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client-side TLS context: trust ``ca_file`` (else the system store), present ``cert_file``/``key_file``
    when given, and check the server's certificate and name unless ``verify`` is false."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Connection settings.

    Attributes:
        connect_timeout: seconds to establish TCP (and TLS) before giving up on a server.
        keepalive: enable TCP keepalive probes (idle/interval/count in seconds/probes).
        tls: a client TLS context, or None for plain TCP.
        server_hostname: name checked against the server certificate (defaults to the address's host).
        max_packet_size: largest packet body sent or accepted.
    """

    connect_timeout: float = 5.0
    keepalive: bool = True
    keepalive_idle: int = 60
    keepalive_interval: int = 10
    keepalive_count: int = 5
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE

    def tune(self, sock: socket.socket) -> None:
        """Set TCP_NODELAY (a request/reply stalls ~40 ms without it, PROTOCOL.md §1.5) and keepalive."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (
                ("TCP_KEEPIDLE", self.keepalive_idle),
                ("TCP_KEEPINTVL", self.keepalive_interval),
                ("TCP_KEEPCNT", self.keepalive_count),
            ):
                option = getattr(socket, name, None)
                if option is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)


class ConnectionKeywords(TypedDict, total=False):
    """The connection keywords of ``Client``, ``AsyncClient``, ``Worker``, ``AsyncWorker``, ``Admin`` and
    ``AsyncAdmin`` (defaults in brackets).

    connect_timeout: seconds to establish TCP (and TLS) with a server [5.0].
    keepalive: TCP keepalive probes on every connection [True]; keepalive_idle: seconds idle before the first [60].
    ssl_context: a client ``ssl.SSLContext``: connect with TLS [None: plain TCP, unless a file below is given].
    ca_file, cert_file, key_file: build the TLS context (``tls_context``): trust ``ca_file`` (else the system
        store), present ``cert_file`` with ``key_file`` [None]; ignored when ``ssl_context`` is given.
    server_hostname: the name the server certificate must carry [the address's host].
    max_packet_size: the largest packet body sent or accepted [256 MiB].
    """

    connect_timeout: float
    keepalive: bool
    keepalive_idle: int
    ssl_context: ssl.SSLContext | None
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    server_hostname: str | None
    max_packet_size: int


class RequestKeywords(ConnectionKeywords, total=False):
    """The connection keywords of the front-ends that wait for replies (clients and admin clients).

    command_timeout: seconds a server may stay silent while a reply is due; the connection then counts as lost
        [30.0 for clients, 10.0 for admin clients; None: wait forever].
    """

    command_timeout: float | None


def connect_options(keywords: ConnectionKeywords, accepted: type, owner: str) -> ConnectOptions:
    """The ConnectOptions the keywords describe (defaults as ``ConnectionKeywords`` documents them).

    Raises:
        TypeError: a keyword ``accepted`` (the front-end's TypedDict) does not list, as Python itself would say it
            (``**options`` typed with a TypedDict is checked by type checkers only, so a misspelt keyword would
            otherwise be ignored without a word).
    """
    known: frozenset[str] = accepted.__required_keys__ | accepted.__optional_keys__  # type: ignore[attr-defined]
    unknown = sorted(set(keywords) - known)
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    context = keywords.get("ssl_context")
    if context is None and (keywords.get("ca_file") or keywords.get("cert_file")):
        context = tls_context(keywords.get("ca_file"), keywords.get("cert_file"), keywords.get("key_file"))
    return ConnectOptions(
        connect_timeout=keywords.get("connect_timeout", 5.0),
        keepalive=keywords.get("keepalive", True),
        keepalive_idle=keywords.get("keepalive_idle", 60),
        tls=context,
        server_hostname=keywords.get("server_hostname"),
        max_packet_size=keywords.get("max_packet_size", DEFAULT_MAX_PACKET_SIZE),
    )
