"""Numbers and byte fields as gearmand reads and writes them: C's ``atoi`` on text fields, seconds, payloads.

Shared by the board (CAN_DO_TIMEOUT, WORK_STATUS, admin numbers) and the sessions (status replies, workloads);
nothing here knows about packets or connections.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TIMEOUT", "as_bytes", "c_atoi", "name_bytes", "seconds"]

MAX_TIMEOUT = 10 * 365 * 86400.0
"""CAN_DO_TIMEOUT values beyond ten years mean "no timeout" (gearmand crashes on some, PROTOCOL.md §3.9)."""

_LEADING_INT = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_LEADING_NUMBER = re.compile(rb"[ \t\n\v\f\r]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))")


def c_atoi(text: bytes) -> int:
    """C's atoi/strtol: leading blanks, a sign, digits; anything else yields 0."""
    match = _LEADING_INT.match(text)
    return int(match.group(1)) if match else 0


def seconds(text: bytes) -> float:
    """A CAN_DO_TIMEOUT value in seconds; 0 (no timeout) for non-numbers, non-positive or absurd values."""
    match = _LEADING_NUMBER.match(text)
    value = float(match.group(1)) if match else 0.0
    return value if 0.0 < value <= MAX_TIMEOUT else 0.0


def as_bytes(value: object, what: str = "payload") -> bytes:
    """A payload as bytes: ``bytes``/``bytearray``/``memoryview`` as they are, ``str`` as UTF-8.

    Raises:
        TypeError: anything else (an ``int`` would otherwise become NUL bytes, a list its items), naming the type.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, bytearray, memoryview or str, not {type(value).__name__}")


def name_bytes(value: str | bytes | None) -> bytes | None:
    """A function name, client id or prefix as bytes (``str`` as UTF-8); None stays None."""
    return value.encode() if isinstance(value, str) else value
