"""Codec throughput: packets encoded and decoded per second, small and 1 MiB payloads.

Runs in-process (no server). Each figure is the median of interleaved rounds. Ends with one ``RESULT {json}`` line.
Usage: python bench/codec.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from gearworks.protocol import Decoder, PacketType, encode, encode_many
from gearworks.protocol.packets import Packet


def rate(count: int, func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return count / (time.perf_counter() - start)


def scenarios(quick: bool) -> dict[str, tuple[int, Callable[[], object]]]:
    small_n = 50_000 if quick else 200_000
    big_n = 50 if quick else 200
    small = Packet(PacketType.SUBMIT_JOB, (b"reverse", b"3de6f4ee-e6a5-11f1-a61a-02fc00000001", b"hello world"))
    big = Packet(PacketType.WORK_COMPLETE, (b"H:vm:1", bytes(range(256)) * 4096))
    small_wire = encode_many([small] * small_n)
    big_wire = encode_many([big] * big_n)

    def encode_small() -> None:
        for _ in range(small_n):
            encode(small.type, small.args)

    def encode_small_batch() -> None:
        encode_many([small] * small_n)

    def encode_big() -> None:
        for _ in range(big_n):
            encode(big.type, big.args)

    def decode(wire: bytes, chunk: int) -> Callable[[], object]:
        def run() -> None:
            decoder = Decoder()
            for offset in range(0, len(wire), chunk):
                for _ in decoder.feed(wire[offset : offset + chunk]):
                    pass

        return run

    return {
        "encode small": (small_n, encode_small),
        "encode_many small": (small_n, encode_small_batch),
        "encode 1 MiB": (big_n, encode_big),
        "decode small (64 KiB reads)": (small_n, decode(small_wire, 65536)),
        "decode 1 MiB (64 KiB reads)": (big_n, decode(big_wire, 65536)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    cases = scenarios(args.quick)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (count, func) in cases.items():
            samples[name].append(rate(count, func))
    figures = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{'scenario':32} {'packets/s':>14} {'MiB/s':>10}")
    for name, value in figures.items():
        mib = f"{value:10,.0f}" if "1 MiB" in name else ""
        print(f"{name:32} {value:14,.0f} {mib:>10}")
    print("RESULT " + json.dumps({"packets_per_s": {k: round(v) for k, v in figures.items()}, "rounds": rounds}))


if __name__ == "__main__":
    main()
