"""How to connect: timeouts, keepalive, TLS and the packet size limit, shared by every driver."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from gearworks.protocol import DEFAULT_MAX_PACKET_SIZE

__all__ = ["ConnectOptions", "tls_context"]


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
