"""The one output contract of every sans-I/O core (client session, worker session, job board).

How this works: a core owns one ``Outbox`` per link (a server connection for the sessions, a peer connection for
the board) and one ``ready`` list shared by its outboxes. A call into the core appends encoded chunks to the
outboxes of the links it concerns; the first chunk since the last drain puts the outbox on ``ready``. After each
call the driver takes ``ready`` (``core.take_ready()``) and writes each link's ``take_out()`` in one go. No
callback runs from inside a core, so a core never re-enters its driver and a link never references its socket.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["Outbox", "take_ready"]

Item = TypeVar("Item")
Link = TypeVar("Link")


class Outbox(Generic[Item]):
    """Chunks (and, for the board, held-reply markers) waiting to be written to one link."""

    __slots__ = ("out", "ready")

    def __init__(self, ready: list[Any]) -> None:
        self.out: list[Item] = []
        self.ready = ready
        """The owning core's list of outboxes with output, in the order they got it (typed by the core: a list of
        its own link class)."""

    def push(self, chunk: Item) -> None:
        """Queue one chunk."""
        out = self.out
        if not out:
            self.ready.append(self)
        out.append(chunk)

    def push_all(self, chunks: list[Item]) -> None:
        """Queue several chunks in order."""
        if chunks:
            out = self.out
            if not out:
                self.ready.append(self)
            out.extend(chunks)

    def take_out(self) -> list[Item]:
        """Everything queued, in order, leaving the outbox empty."""
        out, self.out = self.out, []
        return out

    def discard(self) -> None:
        """Drop what is queued (the link is gone); the outbox may stay listed in ``ready`` until the next drain."""
        self.out = []


def take_ready(ready: list[Link]) -> list[Link]:
    """Hand a core's ``ready`` outboxes to its driver and start a new round (the list object itself is kept: every
    outbox of the core refers to it)."""
    taken = ready.copy()
    ready.clear()
    return taken
