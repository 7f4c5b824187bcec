"""The blocking driver: one job-server connection as a plain socket, for the threaded front-ends.

Callers pump it (``recv`` with a timeout, or their own ``selectors`` loop over ``fileno()``); the bytes go to the
same sans-I/O sessions the asyncio driver feeds.
"""

from __future__ import annotations

import socket
import ssl

from gearworks.connection.address import ServerAddress
from gearworks.connection.errors import map_socket_errors
from gearworks.connection.options import ConnectOptions
from gearworks.errors import ConnectionLost

__all__ = ["BlockingConnection"]

_READ_SIZE = 64 * 1024
"""Below glibc's 128 KiB mmap threshold: larger recv buffers are fresh mappings, ~500 page faults per MiB read."""
_MAX_IOV = 512
"""Chunks per sendmsg call (Linux allows 1024)."""


class BlockingConnection:
    """A connected socket to one job server."""

    def __init__(self, address: ServerAddress, sock: socket.socket) -> None:
        self.address = address
        self.sock = sock
        self.closed = False

    @classmethod
    def connect(cls, address: ServerAddress, options: ConnectOptions) -> BlockingConnection:
        """Connect (TCP, TLS or Unix socket) within ``options.connect_timeout``.

        Raises:
            ConnectionLost: the server could not be reached in time.
        """
        with map_socket_errors("cannot connect to", address):
            if address.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(options.connect_timeout)
                    sock.connect(address.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((address.host, address.port), timeout=options.connect_timeout)
            try:
                options.tune(sock)
                if options.tls is not None:
                    hostname = options.server_hostname or (address.host if address.path is None else "localhost")
                    sock = options.tls.wrap_socket(sock, server_hostname=hostname)
                sock.settimeout(None)
            except BaseException:
                sock.close()
                raise
        return cls(address, sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, chunks: list[bytes]) -> None:
        """Write every chunk (a batch of packets) before returning.

        Raises:
            ConnectionLost: the write failed; the connection is closed.
        """
        if self.closed:
            raise ConnectionLost(f"connection to {self.address} is closed")
        try:
            with map_socket_errors("lost connection to", self.address):
                if self.sock.gettimeout() is not None:  # settimeout is a syscall: only when needed
                    self.sock.settimeout(None)  # not the timeout of the last recv: a large write may take longer
                if len(chunks) > 1 and sum(map(len, chunks)) < _READ_SIZE:
                    chunks = [b"".join(chunks)]  # small packets: one syscall
                if len(chunks) > 1 and not isinstance(self.sock, ssl.SSLSocket):
                    self._send_vectored(chunks)  # large payloads: one writev, no extra copy
                else:
                    for chunk in chunks:
                        self.sock.sendall(chunk)
        except ConnectionLost:
            self.close()
            raise

    def write_some(self, chunks: list[bytes | memoryview]) -> list[bytes | memoryview]:
        """Write what the socket takes now, without waiting; returns what is left, in order (empty: all written).
        For callers that wait for writability in their own selector, so a server that stops reading cannot hold
        them past their deadline.

        Raises:
            ConnectionLost: the write failed; the connection is closed.
        """
        if self.closed:
            raise ConnectionLost(f"connection to {self.address} is closed")
        if len(chunks) > 1 and sum(map(len, chunks)) < _READ_SIZE:
            chunks = [b"".join(chunks)]  # small packets: one syscall
        try:
            with map_socket_errors("lost connection to", self.address):
                if isinstance(self.sock, ssl.SSLSocket):
                    return self._write_some_tls(chunks)
                if self.sock.gettimeout() is not None:
                    self.sock.settimeout(None)  # MSG_DONTWAIT decides; a timeout would make CPython poll first
                return self._write_some_plain(chunks)
        except ConnectionLost:
            self.close()
            raise

    def _write_some_plain(self, chunks: list[bytes | memoryview]) -> list[bytes | memoryview]:
        first = 0
        while first < len(chunks):
            try:
                sent = self.sock.sendmsg(chunks[first : first + _MAX_IOV], (), socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            while first < len(chunks) and sent >= len(chunks[first]):
                sent -= len(chunks[first])
                first += 1
            if sent:
                chunks[first] = memoryview(chunks[first])[sent:]
                break  # the socket buffer is full
        return chunks[first:]

    def _write_some_tls(self, chunks: list[bytes | memoryview]) -> list[bytes | memoryview]:
        # OpenSSL writes a whole chunk or wants it again, unchanged, once the socket is writable.
        self.sock.settimeout(0.0)
        first = 0
        try:
            while first < len(chunks):
                sent = self.sock.send(chunks[first])
                if sent < len(chunks[first]):
                    chunks[first] = memoryview(chunks[first])[sent:]
                    break
                first += 1
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            pass
        return chunks[first:]

    def _send_vectored(self, chunks: list[bytes]) -> None:
        views = [memoryview(chunk) for chunk in chunks]
        first = 0
        while first < len(views):
            sent = self.sock.sendmsg(views[first : first + _MAX_IOV])
            while first < len(views) and sent >= len(views[first]):
                sent -= len(views[first])
                first += 1
            if sent:
                views[first] = views[first][sent:]

    def recv(self, timeout: float | None = None) -> bytes:
        """Bytes from the server, waiting up to ``timeout`` seconds (None: forever); b"" when nothing came in time.

        Raises:
            ConnectionLost: the server closed the connection or the socket failed.
        """
        if self.closed:
            raise ConnectionLost(f"connection to {self.address} is closed")
        if self.sock.gettimeout() != timeout:
            self.sock.settimeout(timeout)  # a syscall: skipped when unchanged, as on every call of a worker loop
        try:
            with map_socket_errors("lost connection to", self.address):
                data = self.sock.recv(_READ_SIZE)
        except ConnectionLost as exc:
            if isinstance(exc.__cause__, TimeoutError):
                return b""
            self.close()
            raise
        if not data:
            self.close()
            raise ConnectionLost(f"connection to {self.address} closed by the server")
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()
