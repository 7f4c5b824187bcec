"""Random and mutated Gearman packets for fuzzing a job server: valid packets with hostile arguments, flipped
bytes, wrong declared lengths, truncations, garbage and mangled admin lines. Shared by the short fuzz test in CI
and ``bench/fuzz.py``; pure functions of a ``random.Random``, so a seed replays a run."""

from __future__ import annotations

import random
import struct
import time

from gearworks.protocol import ARGUMENTS, REQ, RES, PacketType, encode

ADMIN_LINES = [
    b"status",
    b"workers",
    b"prioritystatus",
    b"show jobs",
    b"show unique jobs",
    b"jobs",
    b"clients",
    b"version",
    b"getpid",
    b"verbose",
    b"maxqueue f 3",
    b"maxqueue f",
    b"create function g",
    b"drop function g",
    b"cancel job H:vm:1",
    b"show",
    b"a b c d e f",
]
FUNCTIONS = [b"f", b"g", b"", b"x" * 100]


def random_args(rng: random.Random, ptype: PacketType) -> list[bytes]:
    names = ARGUMENTS[ptype]
    args: list[bytes] = []
    for index, name in enumerate(names):
        last = index == len(names) - 1
        if name == "function":
            arg = rng.choice(FUNCTIONS)
        elif name == "handle":
            arg = b"H:vm:%d" % rng.randrange(1, 200)
        elif name in ("unique", "reducer"):
            arg = rng.choice([b"", b"-", b"u%d" % rng.randrange(5), b"u" * rng.choice((63, 64, 65))])
        elif name in ("timeout", "epoch", "numerator", "denominator"):
            arg = rng.choice([b"0", b"1", b"-1", b"abc", b"99999999999999999999", b"%d" % (time.time() + 2)])
        else:
            arg = rng.randbytes(rng.choice((0, 1, 10, 100, 3000)))
        if not last:
            arg = arg.replace(b"\0", b"")
        args.append(arg)
    return args


def valid_packet(rng: random.Random) -> bytes:
    ptype = rng.choice(list(PacketType))
    return encode(ptype, random_args(rng, ptype), rng.choice((REQ, REQ, REQ, RES)))


def mutated(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:  # flipped bytes in a valid packet
        flipped = bytearray(valid_packet(rng))
        for _ in range(rng.randrange(1, 4)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped)
    if kind == 1:  # random type, random declared length, short body
        return (
            REQ + struct.pack(">II", rng.getrandbits(32), rng.getrandbits(rng.choice((4, 16, 32)))) + rng.randbytes(8)
        )
    if kind == 2:  # truncated valid packet
        data = valid_packet(rng)
        return data[: rng.randrange(len(data))]
    if kind == 3:  # garbage
        return rng.randbytes(rng.randrange(1, 64))
    if kind == 4:  # admin line, sometimes mangled
        line = bytearray(rng.choice(ADMIN_LINES) + rng.choice((b"\n", b"\r\n")))
        if rng.random() < 0.3:
            line[rng.randrange(len(line))] = rng.randrange(1, 256)
        return bytes(line)
    if kind == 5:  # declared length shorter or longer than the body
        ptype = rng.choice(list(PacketType))
        body = b"\0".join(random_args(rng, ptype))
        return REQ + struct.pack(">II", ptype, max(len(body) + rng.randrange(-3, 4), 0)) + body
    return valid_packet(rng)
