"""Options every client-side subcommand shares: which job servers (``-h/--host``, ``-p/--port``, ``--servers``,
``$GEARMAN_SERVERS``), connection timeouts and TLS, turned into addresses and the connection keywords."""

from __future__ import annotations

import argparse
import os

from gearworks.connection import DEFAULT_PORT, ConnectionKeywords, ServerAddress, parse_servers, tls_context

__all__ = ["add_server_arguments", "connection_keywords", "servers"]


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server, timeout and TLS options (``-h`` is the host, as in gearman/gearadmin; help is ``--help``)."""
    group = parser.add_argument_group("job servers")
    group.add_argument("-h", "--host", help="job server host (default 127.0.0.1)")
    group.add_argument("-p", "--port", type=int, help=f"job server port (default {DEFAULT_PORT})")
    group.add_argument(
        "--servers",
        metavar="LIST",
        help="comma-separated host:port or /unix/socket list (default: $GEARMAN_SERVERS, else 127.0.0.1:4730)",
    )
    group.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS", help="default 5")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", help="connect with TLS (implied by the other --tls-* options)")
    tls.add_argument("--tls-ca", metavar="FILE", help="CA certificates to verify the server with")
    tls.add_argument("--tls-cert", metavar="FILE", help="client certificate")
    tls.add_argument("--tls-key", metavar="FILE", help="client private key")
    tls.add_argument("--tls-no-verify", action="store_true", help="do not verify the server's certificate")
    parser.add_argument("--help", action="help", help="show this help and exit")


def servers(args: argparse.Namespace) -> list[ServerAddress]:
    """The addresses the options name: ``--servers`` wins, then ``-h``/``-p``, then ``$GEARMAN_SERVERS``."""
    if args.servers:
        return parse_servers(args.servers)
    if args.host or args.port:
        host = args.host or "127.0.0.1"
        if "/" in host:
            return [ServerAddress.parse(host)]
        return [ServerAddress(host=host, port=args.port or DEFAULT_PORT)]
    return parse_servers(os.environ.get("GEARMAN_SERVERS") or None)


def connection_keywords(args: argparse.Namespace) -> ConnectionKeywords:
    """The connection keywords the timeout and TLS options give (``--tls-no-verify`` needs a context of our own)."""
    wants_tls = args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_no_verify
    context = (
        tls_context(args.tls_ca, args.tls_cert, args.tls_key, verify=not args.tls_no_verify) if wants_tls else None
    )
    return {"connect_timeout": args.connect_timeout, "ssl_context": context}
