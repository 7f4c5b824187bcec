"""Which job server a request goes to: the server list, unique-key hashing, spreading, backoff and the prefix.

No sockets and no clock: the session tells the router when connecting failed or worked, passing ``now``.

How picking works: a job with a unique key goes to the server with the highest rendezvous weight
(crc32 of server + key) among the servers that may be tried now, so the same key always reaches the same
server while it is up, and only the keys of a removed or dead server move. Other requests go round-robin.
A server whose connection attempt failed is skipped until its Backoff allows a retry (the delay doubles up to a cap
and the server is then tried again at that pace, as Gearman::Client does, however long it was down); only with
``backoff_max`` set is it disabled after that many consecutive failures (until the server list is replaced).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from gearworks.connection import ServerAddress, parse_servers
from gearworks.connection.backoff import Backoff
from gearworks.errors import NoServerAvailable

__all__ = ["Router"]


class Router:
    """The job servers of one client and their health.

    Args:
        servers: addresses (see ``parse_servers``; None reads ``$GEARMAN_SERVERS``).
        prefix: namespace for function names: ``prefix + "\\t" + name`` on the wire, as Gearman::Client does.
        backoff_initial, backoff_maximum: reconnect delay in seconds after the first failed connection attempt
            (default 0.1), doubling per failure up to ``backoff_maximum`` (default 30).
        backoff_max: consecutive failed attempts after which a server is disabled for good (default None: never,
            so a client outlives any outage).
    """

    def __init__(
        self,
        servers: str | ServerAddress | Iterable[str | ServerAddress] | None = None,
        *,
        prefix: str | bytes | None = None,
        backoff_initial: float = 0.1,
        backoff_maximum: float = 30.0,
        backoff_max: int | None = None,
    ) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_maximum = backoff_maximum
        self.backoff_max = backoff_max
        self.prefix = (prefix.encode() if isinstance(prefix, str) else prefix) + b"\t" if prefix else b""
        self.servers: list[ServerAddress] = []
        self.backoffs: dict[ServerAddress, Backoff] = {}
        self._next = 0
        self.replace(servers)

    def replace(self, servers: str | ServerAddress | Iterable[str | ServerAddress] | None) -> list[ServerAddress]:
        """Use a new server list (failure counts start again); returns the servers no longer in it."""
        new = list(dict.fromkeys(parse_servers(servers)))
        removed = [address for address in self.servers if address not in new]
        self.servers = new
        self.backoffs = {address: self._backoff() for address in new}
        self._next = 0
        return removed

    def _backoff(self) -> Backoff:
        return Backoff(self.backoff_initial, self.backoff_maximum, self.backoff_max)

    def function(self, name: str | bytes) -> bytes:
        """The wire name of function ``name``: UTF-8 bytes, behind the prefix if one is set."""
        raw = name.encode() if isinstance(name, str) else bytes(name)
        return self.prefix + raw if self.prefix else raw

    def pick(self, now: float, key: bytes | None = None) -> ServerAddress:
        """The server for a request with hashing ``key`` (None: spread round-robin).

        Raises:
            NoServerAvailable: every server is disabled or waiting out its backoff.
        """
        servers = self.servers
        if len(servers) == 1 and self.backoffs[servers[0]].available(now):
            return servers[0]
        if key:
            ranked = sorted(servers, key=lambda address: zlib.crc32(key, zlib.crc32(str(address).encode())))
            for address in reversed(ranked):
                if self.backoffs[address].available(now):
                    return address
        else:
            count = len(servers)
            for step in range(count):
                address = servers[(self._next + step) % count]
                if self.backoffs[address].available(now):
                    self._next = (self._next + step + 1) % count
                    return address
        raise NoServerAvailable(self._why(now))

    def _why(self, now: float) -> str:
        states = []
        for address in self.servers:
            backoff = self.backoffs[address]
            if backoff.disabled:
                states.append(f"{address} disabled after {backoff.failures} failed attempts")
            else:
                states.append(f"{address} retried in {backoff.delay(now):.2f}s")
        return "no job server available: " + ", ".join(states)

    def failed(self, address: ServerAddress, now: float) -> None:
        """A connection attempt to ``address`` failed at ``now``."""
        backoff = self.backoffs.get(address)
        if backoff is not None:
            backoff.failed(now)

    def succeeded(self, address: ServerAddress) -> None:
        """A connection to ``address`` was established."""
        backoff = self.backoffs.get(address)
        if backoff is not None:
            backoff.succeeded()
