"""Job server addresses: ``host:port``, ``host`` (port 4730), ``[v6]:port``, or a Unix socket path."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DEFAULT_PORT", "ServerAddress", "parse_servers"]

DEFAULT_PORT = 4730


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a job server listens: TCP host and port, or a Unix socket path (``path`` set, host empty)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str | None = None

    @classmethod
    def parse(cls, spec: str | ServerAddress) -> ServerAddress:
        """Parse ``host:port``, ``host``, ``[::1]:4730``, ``unix:/path`` or ``/path`` (anything with a ``/``).

        Raises:
            ValueError: empty spec or a port that is not a number in 1..65535.
        """
        if isinstance(spec, ServerAddress):
            return spec
        text = spec.strip()
        if not text:
            raise ValueError("empty job server address")
        if text.startswith("unix:"):
            return cls(host="", port=0, path=text[5:])
        if "/" in text:
            return cls(host="", port=0, path=text)
        host, port = text, str(DEFAULT_PORT)
        if text.startswith("["):
            close = text.find("]")
            if close < 0:
                raise ValueError(f"bad job server address {spec!r}: missing ']'")
            host, rest = text[1:close], text[close + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"bad job server address {spec!r}")
                port = rest[1:]
        elif text.count(":") == 1:
            host, port = text.split(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad port in job server address {spec!r}")
        return cls(host=host or "127.0.0.1", port=int(port))

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_servers(servers: str | ServerAddress | Iterable[str | ServerAddress] | None) -> list[ServerAddress]:
    """A list of addresses from one spec, a comma-separated string, a list, or None (``GEARMAN_SERVERS`` from the
    environment, else 127.0.0.1:4730)."""
    if servers is None:
        servers = os.environ.get("GEARMAN_SERVERS") or "127.0.0.1:4730"
    if isinstance(servers, ServerAddress):
        return [servers]
    if isinstance(servers, str):
        servers = [part for part in servers.split(",") if part.strip()]
    parsed = [ServerAddress.parse(item) for item in servers]
    if not parsed:
        raise ValueError("no job servers given")
    return parsed
