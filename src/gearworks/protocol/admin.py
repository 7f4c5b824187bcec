"""The admin text protocol, both directions (PROTOCOL.md §4): splitting a command line into words the way gearmand
does, framing list replies, and an incremental reader of replies for admin clients.

A command is one line; its reply is one line (``OK ...``, ``ERR ...``, a version) or a block of lines ended by
``.\\n`` (``status``, ``workers``, ...). No I/O here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from gearworks.errors import ProtocolError

__all__ = [
    "BLOCK_COMMANDS",
    "BLOCK_END",
    "LINE_COMMANDS",
    "MAX_WORDS",
    "AdminReply",
    "AdminReplyReader",
    "ReplyShape",
    "format_block",
    "reply_shape",
    "split_words",
]

MAX_WORDS = 5
"""gearmand closes the connection, without a reply, on a line of more than five words (PROTOCOL.md §4.1)."""
BLOCK_END = b".\n"
BLOCK_COMMANDS = frozenset(
    {
        b"status",
        b"workers",
        b"prioritystatus",
        b"show jobs",
        b"show unique jobs",
        b"jobs",
        b"clients",
        b"dead",
        b"dead list",
        b"stats",
        b"cluster",
    }
)
"""Commands whose successful reply is a block of lines ended by ``.\\n``; every other reply is one line."""
LINE_COMMANDS = frozenset({b"dead requeue", b"dead purge"})
"""Commands answered with one line although a shorter prefix of them is a block command."""


def split_words(line: bytes) -> list[bytes]:
    """Split a command line as gearmand does: runs of spaces separate words, tabs do not, a leading space yields an
    empty first word. The caller has already removed the line ending."""
    words = [word for word in line.split(b" ") if word]
    if line[:1] == b" " or not words:
        words.insert(0, b"")
    return words


def format_block(lines: Iterable[bytes]) -> bytes:
    """A list reply: each line followed by ``\\n``, then ``.\\n``."""
    return b"".join(line + b"\n" for line in lines) + BLOCK_END


class ReplyShape(Enum):
    """Whether a reply is one line or a ``.``-terminated block."""

    LINE = "line"
    BLOCK = "block"


def reply_shape(command: bytes) -> ReplyShape:
    """The shape of the reply a server gives to ``command`` when it succeeds."""
    words = [word.lower() for word in split_words(command.rstrip(b"\r\n"))]
    for count in (3, 2, 1):
        prefix = b" ".join(words[:count])
        if prefix in LINE_COMMANDS:
            return ReplyShape.LINE
        if prefix in BLOCK_COMMANDS:
            # `show jobs extra` is answered with one ERR line, which the reader recognises whatever it expected.
            return ReplyShape.BLOCK
    return ReplyShape.LINE


@dataclass(frozen=True, slots=True)
class AdminReply:
    """One complete reply.

    Attributes:
        raw: the reply's bytes exactly as received, line endings included.
        lines: the lines without their endings (and without the block's final ``.``).
        error: the reply is an ``ERR`` line.
    """

    raw: bytes
    lines: tuple[bytes, ...]
    error: bool = False

    @property
    def text(self) -> str:
        """A one-line reply as text, its line ending removed."""
        return self.lines[0].decode("utf-8", "replace") if self.lines else ""

    def error_parts(self) -> tuple[str, str]:
        """(code, text) of an ``ERR CODE text`` line, with gearmand's ``+`` for space undone in the text."""
        parts = self.text.split(" ", 2)
        code = parts[1] if len(parts) > 1 else ""
        text = parts[2].replace("+", " ") if len(parts) > 2 else ""
        return code, text


def _strip_eol(line: bytes) -> bytes:
    return line[:-2] if line.endswith(b"\r\n") else line[:-1]


class AdminReplyReader:
    """Cuts the bytes an admin client receives into replies, given the shape each sent command expects.

    Call ``expect`` once per command sent, in order; ``feed`` returns the replies completed so far. An ``ERR``
    line ends a reply whatever shape was expected (``show foo`` answers a would-be block in one line).
    """

    def __init__(self, max_reply: int = 64 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._expected: deque[ReplyShape] = deque()
        self._block: list[bytes] = []
        self.max_reply = max_reply

    def expect(self, shape: ReplyShape) -> None:
        """Register the shape of the reply to the next command sent."""
        self._expected.append(shape)

    @property
    def waiting(self) -> int:
        """Replies still expected."""
        return len(self._expected)

    def feed(self, data: bytes) -> list[AdminReply]:
        """Add received bytes and return the replies they complete.

        Raises:
            ProtocolError: bytes arrived that no command asked for, or a reply grew past ``max_reply``.
        """
        self._buf += data
        replies: list[AdminReply] = []
        pos = 0
        while True:
            newline = self._buf.find(b"\n", pos)
            if newline < 0:
                break
            if not self._expected:
                raise ProtocolError(f"unexpected admin reply line {bytes(self._buf[pos : newline + 1])!r}")
            line = bytes(self._buf[pos : newline + 1])
            pos = newline + 1
            shape = self._expected[0]
            if shape is ReplyShape.BLOCK and not (not self._block and line.startswith(b"ERR ")):
                if line != BLOCK_END:
                    self._block.append(line)
                    continue
                raw = b"".join(self._block) + line
                replies.append(AdminReply(raw, tuple(_strip_eol(x) for x in self._block)))
                self._block = []
            else:
                replies.append(AdminReply(line, (_strip_eol(line),), error=line.startswith(b"ERR")))
            self._expected.popleft()
        del self._buf[:pos]
        if len(self._buf) + sum(map(len, self._block)) > self.max_reply:
            raise ProtocolError(f"admin reply longer than {self.max_reply} bytes")
        return replies
