"""Encoding and decoding of every packet type, streams split anywhere, and every malformed input."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearworks.errors import ProtocolError
from gearworks.protocol import ARGUMENTS, REQ, RES, Decoder, Packet, PacketType, encode, encode_many, encode_parts
from gearworks.protocol.codec import LARGE_PAYLOAD


def sample_args(ptype: PacketType) -> tuple[bytes, ...]:
    """Arguments for ptype whose last one holds NUL bytes (the only place they are allowed)."""
    names = ARGUMENTS[ptype]
    return tuple(f"{name}-{i}".encode() for i, name in enumerate(names[:-1])) + (
        (b"last\0with\0nuls",) if names else ()
    )


def decode_all(data: bytes, **options: object) -> list[Packet | bytes]:
    decoder = Decoder(**options)  # type: ignore[arg-type]
    items = list(decoder.feed(data))
    decoder.close()
    return items


@pytest.mark.parametrize("ptype", list(PacketType), ids=lambda t: t.name)
@pytest.mark.parametrize("magic", [REQ, RES], ids=["REQ", "RES"])
def test_every_packet_type_round_trips(ptype: PacketType, magic: bytes) -> None:
    args = sample_args(ptype)
    wire = encode(ptype, args, magic)
    assert wire[:4] == magic
    assert struct.unpack(">II", wire[4:12]) == (ptype, len(wire) - 12)
    assert decode_all(wire) == [Packet(ptype, args, magic)]


def test_wire_bytes_match_gearmand_transcript() -> None:
    # PROTOCOL.md §5.2: SUBMIT_JOB "reverse\0\0test" and the JOB_ASSIGN reply.
    assert encode(PacketType.SUBMIT_JOB, [b"reverse", b"", b"test"]) == bytes.fromhex(
        "00524551000000070000000d72657665727365000074657374"
    )
    assert encode(PacketType.JOB_ASSIGN, [b"H:vm:1", b"reverse", b"test"], RES) == (
        b"\0RES\0\0\0\x0b\0\0\0\x13H:vm:1\0reverse\0test"
    )
    assert encode(PacketType.NOOP, [], RES) == b"\0RES\0\0\0\x06\0\0\0\0"


def test_empty_arguments_are_kept() -> None:
    wire = encode(PacketType.SUBMIT_JOB_BG, [b"f", b"", b""])
    assert decode_all(wire) == [Packet(PacketType.SUBMIT_JOB_BG, (b"f", b"", b""))]


def test_decoder_accepts_a_stream_split_at_every_byte() -> None:
    packets = [Packet(t, sample_args(t)) for t in PacketType]
    wire = encode_many(packets)
    decoder = Decoder()
    out = [item for i in range(len(wire)) for item in decoder.feed(wire[i : i + 1])]
    decoder.close()
    assert out == packets


def test_encode_parts_keeps_a_large_payload_as_its_own_chunk() -> None:
    payload = b"\0x" * LARGE_PAYLOAD
    parts = encode_parts(PacketType.WORK_COMPLETE, [b"H:x:1", payload])
    assert len(parts) == 2
    assert parts[1] is payload
    assert b"".join(parts) == encode(PacketType.WORK_COMPLETE, [b"H:x:1", payload])
    assert encode_parts(PacketType.NOOP) == [encode(PacketType.NOOP)]


def test_four_mib_payload_with_nuls_round_trips_in_chunks() -> None:
    payload = bytes(range(256)) * (4 * 4096)
    wire = encode(PacketType.SUBMIT_JOB, [b"f", b"u", payload])
    decoder = Decoder()
    out = [item for i in range(0, len(wire), 65536) for item in decoder.feed(wire[i : i + 65536])]
    assert out == [Packet(PacketType.SUBMIT_JOB, (b"f", b"u", payload))]
    assert decoder.buffered == 0


def test_packets_before_a_malformed_one_are_still_yielded() -> None:
    wire = encode(PacketType.ECHO_REQ, [b"before"]) + b"\0BAD" + bytes(8)
    decoder = Decoder()
    seen: list[Packet | bytes] = []
    with pytest.raises(ProtocolError, match="bad magic"):
        seen.extend(decoder.feed(wire))
    assert seen == [Packet(PacketType.ECHO_REQ, (b"before",))]
    with pytest.raises(ProtocolError, match="already failed"):
        list(decoder.feed(b""))


# Encoding misuse: ValueError before anything is sent.


def test_encode_rejects_wrong_argument_count() -> None:
    with pytest.raises(ValueError, match="SUBMIT_JOB takes 3 arguments, got 2"):
        encode(PacketType.SUBMIT_JOB, [b"f", b"x"])


def test_encode_rejects_nul_in_a_non_final_argument() -> None:
    with pytest.raises(ValueError, match="'function' must not contain a NUL"):
        encode(PacketType.SUBMIT_JOB, [b"f\0g", b"", b"x"])


def test_encode_rejects_a_body_over_the_limit() -> None:
    with pytest.raises(ValueError, match="exceeds the 10-byte packet limit"):
        encode(PacketType.ECHO_REQ, [b"x" * 11], max_size=10)
    with pytest.raises(ValueError, match="exceeds the 10-byte packet limit"):
        encode_parts(PacketType.ECHO_REQ, [b"x" * LARGE_PAYLOAD], max_size=10)


# Malformed input: one ProtocolError type, with a message that says what was wrong.


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\0BAD" + struct.pack(">II", 16, 0), r"bad magic b'\\x00BAD'"),
        (b"\0req" + struct.pack(">II", 16, 0), "bad magic"),
        (REQ + struct.pack(">II", 0, 0), "unknown packet type 0"),
        (REQ + struct.pack(">II", 43, 0), "unknown packet type 43"),
        (REQ + struct.pack(">II", 0x80000001, 0), "unknown packet type 2147483649"),
        (REQ + struct.pack(">II", 0xFFFFFFFF, 0), "unknown packet type 4294967295"),
        (REQ + struct.pack(">II", 7, 7) + b"reverse", "SUBMIT_JOB needs 3 arguments, the body holds 1"),
        (REQ + struct.pack(">II", 12, 7) + b"H:1\x001/2", "WORK_STATUS needs 3 arguments, the body holds 2"),
        (REQ + struct.pack(">II", 23, 6) + b"fnonly", "CAN_DO_TIMEOUT needs 2 arguments"),
        (b"status\n", r"bad magic b'stat'"),
    ],
)
def test_malformed_input_raises_protocol_error(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_all(wire)


def test_too_few_nuls_never_read_into_the_next_packet() -> None:
    # gearmand scans past the declared length for missing NULs (PROTOCOL.md §1.3); we cut by length first.
    wire = REQ + struct.pack(">II", 7, 7) + b"reverse" + encode(PacketType.ECHO_REQ, [b"\0\0\0"])
    with pytest.raises(ProtocolError, match="SUBMIT_JOB needs 3 arguments"):
        decode_all(wire)


def test_oversized_length_is_refused_from_the_header_alone() -> None:
    decoder = Decoder(max_packet_size=1024)
    with pytest.raises(ProtocolError, match="declares a 1025-byte body, over the 1024-byte packet limit"):
        list(decoder.feed(REQ + struct.pack(">II", 16, 1025)))


def test_default_limit_refuses_a_four_gib_header_without_buffering() -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError, match="over the 268435456-byte packet limit"):
        list(decoder.feed(REQ + struct.pack(">II", 16, 0xFFFFFFF0)))
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (REQ[:3], "stream ended mid-message: 3 bytes"),
        (REQ + struct.pack(">II", 16, 10) + b"abc", "stream ended mid-packet: 3 of 10 body bytes"),
    ],
)
def test_truncated_stream_raises_at_close(tail: bytes, message: str) -> None:
    decoder = Decoder()
    assert list(decoder.feed(encode(PacketType.NOOP, [], RES) + tail)) == [Packet(PacketType.NOOP, (), RES)]
    with pytest.raises(ProtocolError, match=message):
        decoder.close()


def test_extra_bytes_on_an_argumentless_type_are_ignored_like_gearmand() -> None:
    wire = REQ + struct.pack(">II", 9, 3) + b"xyz" + encode(PacketType.NOOP)
    assert decode_all(wire) == [Packet(PacketType.GRAB_JOB), Packet(PacketType.NOOP)]


# Text mode: admin lines mixed with packets on one connection (PROTOCOL.md §1.1).


def test_text_mode_yields_admin_lines_between_packets() -> None:
    echo = encode(PacketType.ECHO_REQ, [b"x"])
    wire = b"version\r\n" + echo + b"status\nshow unique jobs\n"
    assert decode_all(wire, text=True) == [
        b"version",
        Packet(PacketType.ECHO_REQ, (b"x",)),
        b"status",
        b"show unique jobs",
    ]


def test_text_mode_waits_for_the_rest_of_a_line() -> None:
    decoder = Decoder(text=True)
    assert list(decoder.feed(b"stat")) == []
    assert list(decoder.feed(b"us\n")) == [b"status"]


def test_text_line_longer_than_gearmand_buffer_is_refused() -> None:
    decoder = Decoder(text=True)
    assert list(decoder.feed(b"x" * 8000 + b"\n")) == [b"x" * 8000]
    with pytest.raises(ProtocolError, match="admin line longer than 8191 bytes"):
        list(decoder.feed(b"y" * 9000))


# Properties.

packet_types = st.sampled_from(list(PacketType))


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    ptype = draw(packet_types)
    names = ARGUMENTS[ptype]
    head = [draw(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))) for _ in names[:-1]]
    last = [draw(st.binary(max_size=300))] if names else []
    return Packet(ptype, tuple(head + last), draw(st.sampled_from([REQ, RES])))


@settings(max_examples=500)
@given(st.lists(packets(), max_size=20), st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_random_packets_cut_at_random_points_decode_back_equal(batch: list[Packet], cuts: list[int]) -> None:
    wire = encode_many(batch)
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    decoder = Decoder()
    out = [item for a, b in itertools.pairwise(points) for item in decoder.feed(wire[a:b])]
    decoder.close()
    assert out == batch


@settings(max_examples=500)
@given(st.binary(max_size=200), st.booleans())
def test_garbage_raises_only_protocol_error(garbage: bytes, text: bool) -> None:
    decoder = Decoder(text=text, max_packet_size=1 << 16)
    try:
        list(decoder.feed(garbage))
        decoder.close()
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(packets(), st.integers(min_value=0, max_value=11), st.integers(min_value=0, max_value=255))
def test_a_flipped_header_byte_decodes_or_raises_protocol_error(packet: Packet, index: int, value: int) -> None:
    wire = bytearray(encode(packet.type, packet.args, packet.magic))
    wire[index] = value
    decoder = Decoder(max_packet_size=1 << 16)
    try:
        list(decoder.feed(bytes(wire)))
        decoder.close()
    except ProtocolError:
        pass


def _args(items: Iterable[Packet | bytes]) -> list[tuple[bytes, ...]]:
    """The arguments of each packet (a binary decoder yields no text lines)."""
    packets = list(items)
    assert all(isinstance(item, Packet) for item in packets)
    return [item.args for item in packets if isinstance(item, Packet)]


def test_bytes_fed_but_never_iterated_are_kept_for_the_next_feed() -> None:
    decoder = Decoder()
    first, second = encode(PacketType.ECHO_REQ, [b"one"]), encode(PacketType.ECHO_REQ, [b"two"])
    decoder.feed(first)  # the iterator is dropped unused
    assert decoder.buffered == len(first)
    assert _args(decoder.feed(second)) == [(b"one",), (b"two",)]
    assert decoder.buffered == 0


@pytest.mark.parametrize("buffered_before", [False, True])
def test_stopping_early_neither_replays_nor_drops_messages(buffered_before: bool) -> None:
    decoder = Decoder()
    wire = b"".join(encode(PacketType.ECHO_REQ, [b"%d" % n]) for n in range(5))
    if buffered_before:
        list(decoder.feed(wire[:3]))  # a partial header sits in the buffer, so the next feed parses the buffer
        wire = wire[3:]
    for packet in decoder.feed(wire):
        assert _args([packet]) == [(b"0",)]
        break
    taken = _args(decoder.feed(b""))
    assert taken == [(b"1",), (b"2",), (b"3",), (b"4",)]


def test_a_new_feed_ends_the_previous_iterator_without_losing_its_rest() -> None:
    decoder = Decoder()
    old = decoder.feed(encode(PacketType.ECHO_REQ, [b"a"]) + encode(PacketType.ECHO_REQ, [b"b"]))
    assert _args([next(old)]) == [(b"a",)]
    assert _args(decoder.feed(encode(PacketType.ECHO_REQ, [b"c"]))) == [(b"b",), (b"c",)]
    assert list(old) == []
