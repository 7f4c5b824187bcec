"""Gearman binary packet types, magic codes and the argument layout of each type (PROTOCOL.md §1.2, §2).

Pure data: no I/O and no encoding logic (that is in ``codec``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "ARGUMENTS",
    "HEADER_SIZE",
    "REQ",
    "RES",
    "Packet",
    "PacketType",
]

REQ = b"\0REQ"
"""Magic of packets sent to a job server."""
RES = b"\0RES"
"""Magic of packets sent by a job server."""
HEADER_SIZE = 12
"""magic (4) + type (4, big-endian) + body length (4, big-endian)."""


class PacketType(IntEnum):
    """Every binary packet type, numbered and named as in the protocol specification."""

    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    UNUSED = 5
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


_T = PacketType
_SUBMIT = ("function", "unique", "workload")
_WORK_DATA = ("handle", "data")
_REDUCE = ("function", "unique", "reducer", "aggregator", "workload")

ARGUMENTS: dict[PacketType, tuple[str, ...]] = {
    _T.CAN_DO: ("function",),
    _T.CANT_DO: ("function",),
    _T.RESET_ABILITIES: (),
    _T.PRE_SLEEP: (),
    _T.UNUSED: (),
    _T.NOOP: (),
    _T.SUBMIT_JOB: _SUBMIT,
    _T.JOB_CREATED: ("handle",),
    _T.GRAB_JOB: (),
    _T.NO_JOB: (),
    _T.JOB_ASSIGN: ("handle", "function", "workload"),
    _T.WORK_STATUS: ("handle", "numerator", "denominator"),
    _T.WORK_COMPLETE: _WORK_DATA,
    _T.WORK_FAIL: ("handle",),
    _T.GET_STATUS: ("handle",),
    _T.ECHO_REQ: ("data",),
    _T.ECHO_RES: ("data",),
    _T.SUBMIT_JOB_BG: _SUBMIT,
    _T.ERROR: ("code", "text"),
    _T.STATUS_RES: ("handle", "known", "running", "numerator", "denominator"),
    _T.SUBMIT_JOB_HIGH: _SUBMIT,
    _T.SET_CLIENT_ID: ("client_id",),
    _T.CAN_DO_TIMEOUT: ("function", "timeout"),
    _T.ALL_YOURS: (),
    _T.WORK_EXCEPTION: _WORK_DATA,
    _T.OPTION_REQ: ("option",),
    _T.OPTION_RES: ("option",),
    _T.WORK_DATA: _WORK_DATA,
    _T.WORK_WARNING: _WORK_DATA,
    _T.GRAB_JOB_UNIQ: (),
    _T.JOB_ASSIGN_UNIQ: ("handle", "function", "unique", "workload"),
    _T.SUBMIT_JOB_HIGH_BG: _SUBMIT,
    _T.SUBMIT_JOB_LOW: _SUBMIT,
    _T.SUBMIT_JOB_LOW_BG: _SUBMIT,
    _T.SUBMIT_JOB_SCHED: (
        "function",
        "unique",
        "minute",
        "hour",
        "day_of_month",
        "month",
        "day_of_week",
        "workload",
    ),
    _T.SUBMIT_JOB_EPOCH: ("function", "unique", "epoch", "workload"),
    _T.SUBMIT_REDUCE_JOB: _REDUCE,
    _T.SUBMIT_REDUCE_JOB_BACKGROUND: _REDUCE,
    _T.GRAB_JOB_ALL: (),
    _T.JOB_ASSIGN_ALL: ("handle", "function", "unique", "reducer", "workload"),
    _T.GET_STATUS_UNIQUE: ("unique",),
    _T.STATUS_RES_UNIQUE: ("unique", "known", "running", "numerator", "denominator", "client_count"),
}
"""Argument names per type, in wire order. Only the last argument may contain NUL bytes (PROTOCOL.md §1.2)."""


class Packet(NamedTuple):
    """One binary packet: its type, its arguments as bytes, and whether it carries request or response magic."""

    type: PacketType
    args: tuple[bytes, ...] = ()
    magic: bytes = REQ

    @property
    def is_request(self) -> bool:
        """True for ``\\0REQ`` packets (sent to a server)."""
        return self.magic == REQ

    def arg(self, name: str) -> bytes:
        """The argument called ``name`` in ARGUMENTS (KeyError-free lookups are for the hot path: use args)."""
        return self.args[ARGUMENTS[self.type].index(name)]
