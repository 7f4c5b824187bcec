"""Connecting without blocking, for loops that serve several servers from one thread (the blocking ``Worker``).

How this works: a ``PendingConnection`` owns a non-blocking socket and walks it through the steps of a connect: the
TCP (or Unix socket) connect, then the TLS handshake. The caller watches ``fileno()`` for ``events`` in its own
selector and calls ``advance()`` whenever they fire; ``advance()`` returns the ``BlockingConnection`` once every step
is done. The caller gives up at ``deadline`` (``connect_timeout`` after the start). So a server that never answers
costs the loop nothing while the others are served. Name resolution (``getaddrinfo``) still blocks: give numeric
addresses where a slow resolver would matter.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import ssl

from gearworks.connection.address import ServerAddress
from gearworks.connection.blocking import BlockingConnection
from gearworks.connection.errors import map_socket_errors
from gearworks.connection.options import ConnectOptions

__all__ = ["PendingConnection"]

_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY}


class PendingConnection:
    """One connection attempt in progress; ``advance()`` when ``events`` fire on ``fileno()``."""

    __slots__ = ("_addresses", "_tls", "address", "deadline", "events", "options", "sock")

    def __init__(self, address: ServerAddress, options: ConnectOptions, now: float) -> None:
        self.address = address
        self.options = options
        self.deadline = now + options.connect_timeout
        """When the caller gives up (``close()``) and counts the attempt as failed."""
        self.events = selectors.EVENT_WRITE
        """What to wait for before the next ``advance()``: writable while TCP connects, either during TLS."""
        self.sock: socket.socket | None = None
        self._tls = False
        self._addresses: list[tuple[int, object]] = []

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def advance(self) -> BlockingConnection | None:
        """Take the next step (the first call starts the connect): the connection when every step is done, else
        None (wait for ``events`` on ``fileno()`` and call again).

        Raises:
            ConnectionLost: the server refused or failed (the socket is closed).
        """
        try:
            with map_socket_errors("cannot connect to", self.address):
                if self.sock is None:
                    return self._start()
                if self._tls:
                    return self._handshake()
                failure = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if failure:
                    self.sock.close()
                    if not self._addresses:
                        raise OSError(failure, os.strerror(failure))
                    return self._connect_next()
                return self._connected()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Abandon the attempt (its deadline passed, or the caller stops)."""
        if self.sock is not None:
            self.sock.close()

    def _start(self) -> BlockingConnection | None:
        address = self.address
        if address.path is not None:
            self._addresses = [(socket.AF_UNIX, address.path)]
        else:
            infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
            self._addresses = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
        return self._connect_next()

    def _connect_next(self) -> BlockingConnection | None:
        """Connect to the next resolved address (as ``socket.create_connection`` tries each in turn)."""
        family, sockaddr = self._addresses.pop(0)
        self.sock = sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.events = selectors.EVENT_WRITE
        failure = sock.connect_ex(sockaddr)  # type: ignore[arg-type]
        if failure in _IN_PROGRESS:
            return None
        if failure:
            sock.close()
            if not self._addresses:
                raise OSError(failure, os.strerror(failure))
            return self._connect_next()
        return self._connected()

    def _connected(self) -> BlockingConnection | None:
        sock = self.sock
        assert sock is not None
        options = self.options
        options.tune(sock)
        if options.tls is None:
            return self._done()
        address = self.address
        hostname = options.server_hostname or (address.host if address.path is None else "localhost")
        self.sock = options.tls.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
        self._tls = True
        return self._handshake()

    def _handshake(self) -> BlockingConnection | None:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self.events = selectors.EVENT_READ
            return None
        except ssl.SSLWantWriteError:
            self.events = selectors.EVENT_WRITE
            return None
        return self._done()

    def _done(self) -> BlockingConnection:
        sock = self.sock
        assert sock is not None
        sock.settimeout(None)
        self.sock = None  # the connection owns it now
        return BlockingConnection(self.address, sock)
