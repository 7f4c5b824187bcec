"""Connections to job servers shared by clients, workers and the admin client: addresses, TLS, and the asyncio and
blocking drivers that move packets between a socket and the protocol core. No job logic lives here."""

from gearworks.connection.address import DEFAULT_PORT, ServerAddress, parse_servers
from gearworks.connection.options import (
    ConnectionKeywords,
    ConnectOptions,
    RequestKeywords,
    connect_options,
    tls_context,
)

__all__ = [
    "DEFAULT_PORT",
    "ConnectOptions",
    "ConnectionKeywords",
    "RequestKeywords",
    "ServerAddress",
    "connect_options",
    "parse_servers",
    "tls_context",
]
