"""The admin text protocol: command words as gearmand splits them, reply framing for admin clients."""

from __future__ import annotations

import pytest

from gearworks.errors import ProtocolError
from gearworks.protocol import AdminReplyReader, ReplyShape, format_block, reply_shape, split_words


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"status", [b"status"]),
        (b"maxqueue  fn   3", [b"maxqueue", b"fn", b"3"]),
        (b" status", [b"", b"status"]),
        (b"", [b""]),
        (b"create function a\tb", [b"create", b"function", b"a\tb"]),
        (b"show jobs ", [b"show", b"jobs"]),
    ],
)
def test_split_words_like_gearmand(line: bytes, words: list[bytes]) -> None:
    assert split_words(line) == words


@pytest.mark.parametrize(
    ("command", "shape"),
    [
        (b"status\n", ReplyShape.BLOCK),
        (b"STATUS\r\n", ReplyShape.BLOCK),
        (b"workers", ReplyShape.BLOCK),
        (b"prioritystatus", ReplyShape.BLOCK),
        (b"show jobs", ReplyShape.BLOCK),
        (b"show unique jobs", ReplyShape.BLOCK),
        (b"jobs", ReplyShape.BLOCK),
        (b"clients", ReplyShape.BLOCK),
        (b"version", ReplyShape.LINE),
        (b"maxqueue f 1", ReplyShape.LINE),
        (b"show", ReplyShape.LINE),
        (b"cancel job H:x:1", ReplyShape.LINE),
        (b"dead", ReplyShape.BLOCK),
        (b"dead list", ReplyShape.BLOCK),
        (b"DEAD requeue all", ReplyShape.LINE),
        (b"dead purge H:x:1", ReplyShape.LINE),
    ],
)
def test_reply_shape_of_each_command(command: bytes, shape: ReplyShape) -> None:
    assert reply_shape(command) is shape


def test_format_block() -> None:
    assert format_block([b"f\t1\t0\t0", b""]) == b"f\t1\t0\t0\n\n.\n"
    assert format_block([]) == b".\n"


def test_reader_splits_pipelined_replies_byte_by_byte() -> None:
    # PROTOCOL.md §4.3: b'version\nstatus\ngetpid\n' gets three replies in order.
    wire = b"OK 1.1.20+ds\nab\t1\t0\t0\nmr\t5\t0\t0\n.\nOK 11028\n"
    reader = AdminReplyReader()
    for shape in (ReplyShape.LINE, ReplyShape.BLOCK, ReplyShape.LINE):
        reader.expect(shape)
    replies = [reply for i in range(len(wire)) for reply in reader.feed(wire[i : i + 1])]
    assert [r.raw for r in replies] == [b"OK 1.1.20+ds\n", b"ab\t1\t0\t0\nmr\t5\t0\t0\n.\n", b"OK 11028\n"]
    assert replies[1].lines == (b"ab\t1\t0\t0", b"mr\t5\t0\t0")
    assert replies[0].text == "OK 1.1.20+ds"
    assert reader.waiting == 0


def test_reader_ends_an_expected_block_at_an_err_line() -> None:
    reader = AdminReplyReader()
    reader.expect(ReplyShape.BLOCK)
    (reply,) = reader.feed(b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n")
    assert reply.error
    assert reply.lines == (b"ERR UNKNOWN_SHOW_ARGUMENTS",)
    assert reply.error_parts() == ("UNKNOWN_SHOW_ARGUMENTS", "")


def test_err_text_has_gearmand_plus_signs_undone() -> None:
    reader = AdminReplyReader()
    reader.expect(ReplyShape.LINE)
    (reply,) = reader.feed(b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n")
    assert reply.error_parts() == ("UNKNOWN_COMMAND", "Unknown server commandfoo")


def test_empty_lines_inside_a_block_are_kept() -> None:
    # `show unique jobs` prints an empty line for a job without a unique key.
    reader = AdminReplyReader()
    reader.expect(ReplyShape.BLOCK)
    (reply,) = reader.feed(b"\n\nru\n.\n")
    assert reply.lines == (b"", b"", b"ru")


def test_unsolicited_reply_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="unexpected admin reply line"):
        AdminReplyReader().feed(b"OK\n")


def test_oversized_reply_is_a_protocol_error() -> None:
    reader = AdminReplyReader(max_reply=100)
    reader.expect(ReplyShape.BLOCK)
    with pytest.raises(ProtocolError, match="longer than 100 bytes"):
        reader.feed(b"x\t1\t1\t1\n" * 20)
