"""Property: whatever mix of requests is pipelined on one connection and however the server's bytes are cut,
each request gets exactly its own reply, in order (PROTOCOL.md §2.1)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gearworks.client.jobs import Call, Job, JobStatus
from gearworks.client.routing import Router
from gearworks.client.session import ChannelState, ClientSession
from gearworks.errors import ServerError
from gearworks.protocol import RES, PacketType, encode

T = PacketType
KINDS = st.sampled_from(["foreground", "background", "echo", "status"])


@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(st.tuples(KINDS, st.booleans()), min_size=1, max_size=40),
    cuts=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=200),
)
def test_pipelined_replies_reach_their_own_requests(requests: list[tuple[str, bool]], cuts: list[int]) -> None:
    session = ClientSession(Router("127.0.0.1:4730"))
    outcomes: list[Job | Call[Any]] = []
    replies: list[bytes] = []
    for index, (kind, refused) in enumerate(requests):
        tag = str(index).encode()
        if kind in ("foreground", "background"):
            job = session.new_job("f", tag, background=kind == "background", options={})
            session.submit(job, 0.0)
            outcomes.append(job)
            created = encode(T.JOB_CREATED, (b"H:" + tag,), RES)
            completed = encode(T.WORK_COMPLETE, (b"H:" + tag, b"result " + tag), RES)
            replies.append(created + completed if kind == "foreground" else created)
        elif kind == "echo":
            outcomes.append(session.echo(tag, 0.0))
            replies.append(encode(T.ECHO_RES, (tag,), RES))
        else:
            outcomes.append(session.get_status(b"H:" + tag, 0.0))
            replies.append(encode(T.STATUS_RES, (b"H:" + tag, b"1", b"0", tag, b"9"), RES))
        if refused:
            replies[-1] = encode(T.ERROR, (b"QUEUE_ERROR", tag), RES)
    (channel,) = session.take_ready()
    assert session.start_connecting(channel)
    session.connected(channel, 0.0)
    channel.take_out()
    stream = b"".join(replies)
    position = 0
    for cut in cuts * (len(stream) // sum(cuts) + 1):
        session.receive(channel, stream[position : position + cut], 0.0)
        position += cut
        if position >= len(stream):
            break
    assert session.pending_count == 0
    assert session.active_count == 0
    for index, ((kind, refused), outcome) in enumerate(zip(requests, outcomes, strict=True)):
        tag = str(index).encode()
        assert outcome.done
        if refused:
            assert isinstance(outcome.error, ServerError)
            assert outcome.error.text == tag.decode()
        elif kind == "foreground":
            assert outcome.result() == b"result " + tag
        elif kind == "background":
            assert outcome.result() == b"H:" + tag
        elif kind == "echo":
            assert outcome.result() == tag
        else:
            status = outcome.result()
            assert isinstance(status, JobStatus)
            assert status.numerator == index
    assert channel.state is ChannelState.CONNECTED
