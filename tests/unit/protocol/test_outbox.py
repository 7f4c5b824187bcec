"""The outbox contract every core shares: the first chunk lists the outbox as ready, a drain empties both."""

from __future__ import annotations

from gearworks.protocol.outbox import Outbox, take_ready


def test_first_chunk_lists_the_outbox_once_and_keeps_order() -> None:
    ready: list[Outbox[bytes]] = []
    first, second = Outbox[bytes](ready), Outbox[bytes](ready)
    second.push(b"a")
    first.push_all([b"b", b"c"])
    second.push(b"d")
    first.push_all([])
    assert take_ready(ready) == [second, first]
    assert ready == []
    assert second.take_out() == [b"a", b"d"]
    assert first.take_out() == [b"b", b"c"]
    second.push(b"e")
    assert ready == [second]


def test_empty_push_all_does_not_list_the_outbox() -> None:
    ready: list[Outbox[bytes]] = []
    Outbox[bytes](ready).push_all([])
    assert ready == []


def test_discard_drops_queued_chunks() -> None:
    ready: list[Outbox[bytes]] = []
    box = Outbox[bytes](ready)
    box.push(b"x")
    box.discard()
    assert box.take_out() == []
