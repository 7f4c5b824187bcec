"""Encoding packets to bytes and an incremental decoder for bytes from a socket (PROTOCOL.md §1).

No I/O here: drivers feed the bytes they read and write the bytes they are given.

How the decoder works: bytes are appended to one buffer (or parsed straight from the caller's chunk when nothing is
buffered); each complete packet is cut out by its declared length, its arguments located by counting NULs inside
that length (never beyond it, unlike gearmand, PROTOCOL.md §1.3), and each argument copied out exactly once. The
size limit is checked from the 12-byte header before any body byte is buffered. In text mode a message whose first
byte is not NUL is an admin line, returned as ``bytes`` without its line ending.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence

from gearworks.errors import ProtocolError
from gearworks.protocol.packets import ARGUMENTS, HEADER_SIZE, REQ, RES, Packet, PacketType

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "LARGE_PAYLOAD",
    "MAX_TEXT_LINE",
    "Decoder",
    "encode",
    "encode_many",
    "encode_parts",
    "encode_submissions",
    "pack_header",
]

DEFAULT_MAX_PACKET_SIZE = 256 * 1024 * 1024
"""Largest body accepted by default: 256 MiB (PROTOCOL.md §7; gearmand itself only has the 32-bit field)."""
MAX_TEXT_LINE = 8192
"""Longest admin line, terminator included: gearmand's 8192-byte receive buffer (PROTOCOL.md §1.4)."""
LARGE_PAYLOAD = 64 * 1024
"""Last arguments at least this long are sent as their own chunk by ``encode_parts`` instead of being copied."""

_HEADER = struct.Struct(">4sII")
pack_header: Callable[[bytes, int, int], bytes] = _HEADER.pack
"""``pack_header(magic, type, size)``: a 12-byte packet header. A bound ``Struct.pack``, for cores that build
replies on a hot path (the type as a plain ``int`` is cheaper than a ``PacketType``); ``encode`` checks, this does
not."""
_unpack_header = _HEADER.unpack_from
_NUL = b"\0"
# Lookup tables indexed by the wire type number: faster than constructing the IntEnum per packet.
_TYPES: dict[int, PacketType] = {int(t): t for t in PacketType}
_ARGC: dict[int, int] = {int(t): len(names) for t, names in ARGUMENTS.items()}

Item = Packet | bytes
"""What the decoder yields: a binary packet, or (text mode) one admin line without its ``\\r\\n``."""


def _check_args(ptype: PacketType, args: Sequence[bytes]) -> None:
    expected = _ARGC[ptype]
    if len(args) != expected:
        raise ValueError(f"{ptype.name} takes {expected} arguments, got {len(args)}")
    for index in range(expected - 1):
        if _NUL in args[index]:
            name = ARGUMENTS[ptype][index]
            raise ValueError(f"{ptype.name} argument {name!r} must not contain a NUL byte")


def encode(
    ptype: PacketType,
    args: Sequence[bytes] = (),
    magic: bytes = REQ,
    max_size: int = DEFAULT_MAX_PACKET_SIZE,
) -> bytes:
    """Encode one packet.

    Raises:
        ValueError: wrong argument count for the type, a NUL inside a non-final argument, or a body over max_size.
    """
    _check_args(ptype, args)
    body = _NUL.join(args)
    if len(body) > max_size:
        raise ValueError(f"{ptype.name} body of {len(body)} bytes exceeds the {max_size}-byte packet limit")
    return pack_header(magic, ptype, len(body)) + body


def encode_many(packets: Iterable[Packet], max_size: int = DEFAULT_MAX_PACKET_SIZE) -> bytes:
    """Encode many packets into one buffer, ready for a single write."""
    out = bytearray()
    for packet in packets:
        out += encode(packet.type, packet.args, packet.magic, max_size)
    return bytes(out)


def encode_parts(
    ptype: PacketType,
    args: Sequence[bytes] = (),
    magic: bytes = REQ,
    max_size: int = DEFAULT_MAX_PACKET_SIZE,
) -> list[bytes]:
    """Encode one packet as chunks for a vectored write: a large last argument stays its own, uncopied chunk."""
    if not args or len(args[-1]) < LARGE_PAYLOAD:
        return [encode(ptype, args, magic, max_size)]
    _check_args(ptype, args)
    payload = args[-1]
    prefix = b"".join(arg + _NUL for arg in args[:-1])
    size = len(prefix) + len(payload)
    if size > max_size:
        raise ValueError(f"{ptype.name} body of {size} bytes exceeds the {max_size}-byte packet limit")
    return [pack_header(magic, ptype, size) + prefix, payload]


def encode_submissions(
    ptype: PacketType, function: bytes, jobs: Iterable[tuple[bytes, bytes]], max_size: int = DEFAULT_MAX_PACKET_SIZE
) -> list[bytes]:
    """Encode many SUBMIT_JOB* packets of one type and function, one per ``(unique, payload)``, as few chunks as
    possible for one vectored write: consecutive packets share one buffer; a large payload (``LARGE_PAYLOAD``) stays
    its own, uncopied chunk, as with ``encode_parts``.

    Raises:
        ValueError: a type that is not a three-argument submission, a NUL in ``function`` or a unique key, or a
            body over ``max_size`` (nothing is returned then).
    """
    if _ARGC[ptype] != 3:
        raise ValueError(f"{ptype.name} is not a three-argument submission")
    if _NUL in function:
        raise ValueError(f"{ptype.name} argument {ARGUMENTS[ptype][0]!r} must not contain a NUL byte")
    chunks: list[bytes] = []
    parts: list[bytes] = []  # the packets since the last large payload, joined once (cheaper than bytearray +=)
    add = parts.append
    name = function + _NUL
    base = len(name) + 1
    header = _HEADER.pack
    number = int(ptype)
    for unique, payload in jobs:
        size = base + len(unique) + len(payload)
        if size > max_size:
            raise ValueError(f"{ptype.name} body of {size} bytes exceeds the {max_size}-byte packet limit")
        if _NUL in unique:
            raise ValueError(f"{ptype.name} argument {ARGUMENTS[ptype][1]!r} must not contain a NUL byte")
        add(header(REQ, number, size))
        add(name)
        add(unique)
        add(_NUL)
        if len(payload) < LARGE_PAYLOAD:
            add(payload)
        else:
            chunks.append(b"".join(parts))
            chunks.append(payload)
            parts.clear()
    if parts:
        chunks.append(b"".join(parts))
    return chunks


class Decoder:
    """Incremental decoder: feed it bytes as they arrive, iterate over what is complete.

    Args:
        max_packet_size: bodies declared larger than this raise ProtocolError from the header alone.
        text: accept admin text lines (server side); otherwise a non-NUL first byte is bad magic.
        max_line: longest admin line, line ending included.

    Raises (from iterating ``feed``, and from ``close``):
        ProtocolError: bad magic, unknown type, too few arguments for the type, oversized body or line, or a
        stream that ends mid-message. The decoder is unusable afterwards; the connection should be closed.
    """

    __slots__ = ("_buf", "_failed", "_pos", "_source", "max_line", "max_packet_size", "text")

    def __init__(
        self,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        text: bool = False,
        max_line: int = MAX_TEXT_LINE,
    ) -> None:
        self.max_packet_size = max_packet_size
        self.text = text
        self.max_line = max_line
        self._buf = bytearray()
        self._failed = False
        self._source: bytes | bytearray | None = None
        """What the latest ``feed`` parses; ``_pos`` is how much of it the messages yielded so far used."""
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a message that was taken."""
        self._settle()
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[Item]:
        """Add ``data`` and return an iterator over every message now complete, in order.

        The contract: ``data`` is kept as soon as ``feed`` returns, whether or not the iterator is used; a message
        is taken once the iterator yields it. Stopping early (``break``) or not iterating at all leaves the rest
        buffered, and the next ``feed`` yields it first; a new ``feed`` ends the previous iterator. Messages
        before a malformed one are yielded before the ProtocolError is raised, so a server can still answer them.
        """
        if self._failed:
            raise ProtocolError("decoder already failed on malformed input")
        self._settle()
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = bytes(data) if not isinstance(data, bytes) else data
        self._source = buf
        self._pos = 0
        return self._messages(buf)

    def _settle(self) -> None:
        """Keep what the latest ``feed`` left unparsed (or untaken) in the buffer, and forget the feed."""
        source = self._source
        if source is None:
            return
        self._source = None
        if source is self._buf:
            del self._buf[: self._pos]
        elif self._pos < len(source):
            self._buf = bytearray(source[self._pos :])

    def discard(self) -> None:
        """Drop whatever is buffered at once (the connection is gone): a partial body may be hundreds of MiB."""
        self._buf = bytearray()

    def close(self) -> None:
        """Declare the end of the stream.

        Raises:
            ProtocolError: the stream stopped in the middle of a packet or line.
        """
        self._settle()
        if self._buf and not self._failed:
            self._failed = True
            head = bytes(self._buf[:HEADER_SIZE])
            if head[:1] == _NUL and len(head) == HEADER_SIZE:
                _, _, size = _unpack_header(head)
                got = len(self._buf) - HEADER_SIZE
                raise ProtocolError(f"stream ended mid-packet: {got} of {size} body bytes received")
            raise ProtocolError(f"stream ended mid-message: {len(self._buf)} bytes of an incomplete message")

    def _messages(self, buf: bytes | bytearray) -> Iterator[Item]:
        """The messages of one ``feed``, one generator deep (it runs once per read: no wrapper around it)."""
        view = memoryview(buf)
        pos: int = 0
        end = len(buf)
        types = _TYPES
        argc_of = _ARGC
        find = buf.find
        new_packet = tuple.__new__
        whole = buf if isinstance(buf, bytes) else None  # bytes slice to bytes; a bytearray's go through the view
        max_size = self.max_packet_size
        try:
            while pos < end:
                if buf[pos] != 0:
                    if not self.text:
                        raise ProtocolError(f"bad magic {bytes(buf[pos : pos + 4])!r}: expected \\0REQ or \\0RES")
                    newline = find(b"\n", pos, pos + self.max_line)
                    if newline < 0:
                        if end - pos >= self.max_line:
                            raise ProtocolError(f"admin line longer than {self.max_line - 1} bytes")
                        break
                    stop = newline - 1 if newline > pos and buf[newline - 1] == 13 else newline
                    line = bytes(view[pos:stop])
                    pos = self._pos = newline + 1
                    yield line
                    if self._source is not buf:
                        return  # a newer feed took over the buffer
                    continue
                if end - pos < HEADER_SIZE:
                    break
                magic, number, size = _unpack_header(buf, pos)
                if magic not in (REQ, RES):
                    raise ProtocolError(f"bad magic {magic!r}: expected \\0REQ or \\0RES")
                ptype = types.get(number)
                if ptype is None:
                    raise ProtocolError(f"unknown packet type {number}")
                if size > max_size:
                    raise ProtocolError(
                        f"{ptype.name} declares a {size}-byte body, over the {max_size}-byte packet limit"
                    )
                start = pos + HEADER_SIZE
                stop = start + size
                if stop > end:
                    break
                argc = argc_of[number]
                if argc == 0:
                    # gearmand ignores extra bytes on argument-less types (PROTOCOL.md §1.3); so do we.
                    args: tuple[bytes, ...] = ()
                elif argc == 1:
                    args = (whole[start:stop] if whole is not None else bytes(view[start:stop]),)
                elif size < LARGE_PAYLOAD:
                    # Small bodies (nearly all packets): one slice and one split in C. The last argument may hold
                    # NULs, hence the maxsplit. Large ones take the loop below, which copies each field once.
                    body = whole[start:stop] if whole is not None else bytes(view[start:stop])
                    parts = body.split(_NUL, argc - 1)
                    if len(parts) < argc:
                        raise ProtocolError(f"{ptype.name} needs {argc} arguments, the body holds {len(parts)}")
                    args = tuple(parts)
                else:
                    fields: list[bytes] = []
                    field = start
                    for _ in range(argc - 1):
                        nul = find(_NUL, field, stop)
                        if nul < 0:
                            raise ProtocolError(
                                f"{ptype.name} needs {argc} arguments, the body holds {len(fields) + 1}"
                            )
                        fields.append(bytes(view[field:nul]))
                        field = nul + 1
                    fields.append(bytes(view[field:stop]))
                    args = tuple(fields)
                pos = stop
                self._pos = pos
                yield new_packet(Packet, (ptype, args, magic))  # Packet(...) without NamedTuple's Python __new__
                if self._source is not buf:
                    return  # a newer feed took over the buffer
            view.release()  # before _settle: a bytearray with a live view cannot be resized
            if self._source is buf:
                self._pos = pos
                self._settle()
        except ProtocolError:
            self._failed = True
            self._source = None
            self._buf = bytearray()  # nothing after a malformed message is ever parsed: free it now
            raise
        finally:
            view.release()
