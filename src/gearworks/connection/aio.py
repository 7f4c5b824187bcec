"""The asyncio driver: one job-server connection as an ``asyncio.Protocol`` that hands received bytes to a
sans-I/O receiver and batches everything written in one loop turn into one ``writelines``."""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from gearworks.connection.address import ServerAddress
from gearworks.connection.errors import map_socket_errors
from gearworks.connection.options import ConnectOptions
from gearworks.errors import ConnectionLost, ProtocolError

__all__ = ["AsyncConnection", "Receiver", "open_connection"]


class Receiver(Protocol):
    """What an AsyncConnection feeds: a session (or its driver) that understands the bytes."""

    def data_received(self, data: bytes) -> None:
        """Consume bytes from the server; may raise ProtocolError, which closes the connection."""

    def connection_lost(self, exc: Exception) -> None:
        """The connection is gone (``exc`` is a ConnectionLost or ProtocolError saying why)."""


_READ_SIZE = 64 * 1024
"""Bytes read per receive, into one reused buffer: below glibc's 128 KiB mmap threshold, so the copy handed on comes
from the heap; 256 KiB reads into fresh buffers (asyncio's default) cost ~500 page faults per MiB received."""


class AsyncConnection(asyncio.BufferedProtocol):
    """One connection to a job server. Writes made during one loop turn go out as a single ``writelines``.

    A BufferedProtocol: the transport reads into one buffer reused for every read; ``data_received`` gets a copy.
    """

    def __init__(self, address: ServerAddress, receiver: Receiver, options: ConnectOptions) -> None:
        self.address = address
        self.receiver = receiver
        self.options = options
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_scheduled = False
        self._writable: asyncio.Event = asyncio.Event()
        self._writable.set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox = memoryview(bytearray(_READ_SIZE))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def writable(self) -> bool:
        """Whether the transport is below its high-water mark (``drain()`` would return at once)."""
        return self._writable.is_set()

    @property
    def buffered(self) -> int:
        """Bytes written and not yet sent: queued for the end of the loop turn, or in the transport's buffer."""
        transport = self.transport
        held = transport.get_write_buffer_size() if transport is not None and not self._closed else 0
        return self._out_bytes + held

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport and expose a PseudoSocket: no isinstance checks.
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.options.tune(sock)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._inbox

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._inbox[:nbytes]))

    def data_received(self, data: bytes) -> None:
        try:
            self.receiver.data_received(data)
        except ProtocolError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._writable.set()
        reason = f"connection to {self.address} lost" + (f": {exc}" if exc else "")
        lost = ConnectionLost(reason)
        lost.__cause__ = exc
        self.receiver.connection_lost(lost)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def write(self, chunks: list[bytes]) -> None:
        """Queue chunks for the end of this loop turn.

        Raises:
            ConnectionLost: the connection is already closed.
        """
        if self._closed:
            raise ConnectionLost(f"connection to {self.address} is closed")
        self._out.extend(chunks)
        self._out_bytes += sum(map(len, chunks))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # The loop is kept from connection_made: get_running_loop() costs a getpid() syscall per call.
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def flush(self) -> None:
        """Write what is queued now rather than at the end of the loop turn (for a receiver that has answered a
        whole read and wants the answer out before the loop runs other callbacks)."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self._closed:
            out, self._out = self._out, []
            self._out_bytes = 0
            self.transport.writelines(out)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark (back-pressure)."""
        await self._writable.wait()

    def close(self) -> None:
        """Flush what is queued and close; the receiver hears ``connection_lost``."""
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: ProtocolError) -> None:
        if self.transport is not None:
            self.transport.abort()
        if not self._closed:
            self._closed = True
            self._writable.set()
            self.receiver.connection_lost(exc)


async def open_connection(address: ServerAddress, receiver: Receiver, options: ConnectOptions) -> AsyncConnection:
    """Connect (TCP, TLS or Unix socket) within ``options.connect_timeout``.

    Raises:
        ConnectionLost: the server could not be reached in time.
    """
    loop = asyncio.get_running_loop()
    connection = AsyncConnection(address, receiver, options)
    with map_socket_errors("cannot connect to", address):
        async with asyncio.timeout(options.connect_timeout):
            if address.path is not None:
                await loop.create_unix_connection(
                    lambda: connection,
                    address.path,
                    ssl=options.tls,
                    server_hostname=options.server_hostname or ("localhost" if options.tls else None),
                )
            else:
                await loop.create_connection(
                    lambda: connection,
                    address.host,
                    address.port,
                    ssl=options.tls,
                    server_hostname=(options.server_hostname or address.host) if options.tls else None,
                )
    return connection
