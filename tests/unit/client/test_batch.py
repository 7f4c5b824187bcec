"""The batch submissions of ClientSession (``new_jobs`` + ``submit_many``), no sockets: the same jobs, packets and
outcomes as one ``submit`` per workload, with the packets of a batch encoded into one buffer per server."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from gearworks.client.jobs import CreatedEvent, FailEvent, Job, JobHandle, RetryEvent, SubmitOptions
from gearworks.client.session import Channel, ClientSession
from gearworks.codecs import JSONCodec
from gearworks.connection import parse_servers
from gearworks.errors import ClientClosed, ConnectionLost, JobTimeout, NoServerAvailable, ServerError
from gearworks.protocol import Decoder, Packet, PacketType, encode_submissions
from gearworks.protocol.codec import LARGE_PAYLOAD
from tests.unit.client.test_session import connect, created, feed, make_session, sent, submit

T = PacketType


def batch(
    session: ClientSession,
    workloads: list[Any],
    function: str = "f",
    *,
    background: bool = True,
    now: float = 0.0,
    **options: Any,
) -> list[Job]:
    opts: SubmitOptions = options  # type: ignore[assignment]
    jobs = session.new_jobs(function, workloads, background=background, options=opts)
    session.submit_many(jobs, now)
    return jobs


def test_a_batch_is_one_buffer_of_submissions_in_order_and_handles_match_their_jobs() -> None:
    session = make_session()
    before = submit(session, workload=b"before")
    jobs = batch(session, [b"a", b"b", "c"])
    channel = connect(session)
    chunks = channel.take_out()
    assert len(chunks) == 2  # the lone job's packet, then the whole batch in one buffer
    packets = sent_from(chunks)
    assert [p.type for p in packets] == [T.SUBMIT_JOB, *[T.SUBMIT_JOB_BG] * 3]
    assert [p.args[2] for p in packets] == [b"before", b"a", b"b", b"c"]
    uniques = [p.args[1] for p in packets[1:]]
    assert len(set(uniques)) == 3
    assert all(u.startswith(session._unique_prefix) for u in uniques)
    assert [job.unique for job in jobs] == uniques
    feed(session, channel, created(b"H:0"), created(b"H:1"), created(b"H:2"), created(b"H:3"))
    assert before.handle == b"H:0"
    assert not before.done
    assert [job.result() for job in jobs] == [b"H:1", b"H:2", b"H:3"]
    assert [job.events for job in jobs] == [[CreatedEvent(job.handle)] for job in jobs if job.handle]
    handle = jobs[0].handle
    assert isinstance(handle, JobHandle)
    assert handle.server == channel.address
    assert pickle.loads(pickle.dumps(handle)).server == channel.address
    assert session.pending_count == 0


def sent_from(chunks: list[bytes]) -> list[Packet]:
    return [p for p in Decoder().feed(b"".join(chunks)) if isinstance(p, Packet)]


def test_a_batch_packs_the_same_bytes_as_single_submissions() -> None:
    one, many = make_session(), make_session()
    many._unique_prefix = one._unique_prefix
    singles = [submit(one, workload=w, background=True, priority="high") for w in (b"x", b"y" * 70_000)]
    jobs = batch(many, [b"x", b"y" * 70_000], priority="high")
    assert b"".join(connect(one).take_out()) == b"".join(connect(many).take_out())
    assert [job.unique for job in jobs] == [job.unique for job in singles]
    chunks = encode_submissions(T.SUBMIT_JOB_BG, b"f", [(b"u", b"z" * LARGE_PAYLOAD), (b"v", b"w")])
    assert [len(chunk) for chunk in chunks] == [12 + 4, LARGE_PAYLOAD, 12 + 5]  # the large payload is not copied


def test_an_error_in_the_middle_of_a_batch_fails_only_that_job() -> None:
    session = make_session()
    jobs = batch(session, [b"a", b"b", b"c"])
    channel = connect(session)
    sent(channel)
    feed(session, channel, created(b"H:1"), (T.ERROR, (b"ERR", b"queue full")), created(b"H:3"))
    assert jobs[0].result() == b"H:1"
    assert jobs[2].result() == b"H:3"
    assert isinstance(jobs[1].events[-1], FailEvent)
    with pytest.raises(ServerError, match="queue full"):
        jobs[1].result()


def test_foreground_batch_results_reach_their_jobs() -> None:
    session = make_session(codec=JSONCodec())
    jobs = batch(session, [{"n": 1}, {"n": 2}], background=False)
    channel = connect(session)
    assert [p.args[1:] for p in sent(channel)] == [(b"", b'{"n":1}'), (b"", b'{"n":2}')]
    feed(session, channel, created(b"H:1"), created(b"H:2"))
    feed(session, channel, (T.WORK_COMPLETE, (b"H:2", b"2")), (T.WORK_COMPLETE, (b"H:1", b"1")))
    assert [job.result() for job in jobs] == [1, 2]


def test_foreground_batch_with_a_unique_coalesces_as_single_submissions_do() -> None:
    session = make_session()
    jobs = batch(session, [b"a", b"a", b"b"], background=False, unique="-")
    channel = connect(session)
    assert [p.args[2] for p in sent(channel)] == [b"a", b"b"]
    feed(session, channel, created(b"H:1"), created(b"H:2"), (T.WORK_COMPLETE, (b"H:1", b"r")))
    assert jobs[0].result() == jobs[1].result() == b"r"
    assert not jobs[2].done


def test_unique_keys_route_by_hash_across_two_servers_as_single_submissions_do() -> None:
    servers = ["127.0.0.1:1", "127.0.0.1:2"]
    session = make_session(servers)
    keys = [b"k%d" % n for n in range(40)]
    expected = [session.router.pick(0.0, key) for key in keys]
    assert len(set(expected)) == 2
    jobs = [job for key in keys for job in batch(session, [key], unique=key)]
    auto = batch(session, [b"x"] * 40)
    assert [job.server for job in jobs] == expected
    assert [job.server for job in auto] == [session.router.pick(0.0, job.unique) for job in auto]
    ready = session.take_ready()
    assert sorted(str(c.address) for c in ready) == sorted(str(a) for a in parse_servers(servers))
    channels: dict[str, Channel] = {}
    for channel in ready:
        assert session.start_connecting(channel)
        session.connected(channel, 0.0)
        channels[str(channel.address)] = channel
    for address, channel in channels.items():
        mine = [job for job in jobs + auto if str(job.server) == address]
        assert [p.args[1] for p in sent(channel)] == [job.unique for job in mine]
        feed(session, channel, *(created(b"%s:%d" % (address.encode(), n)) for n in range(len(mine))))
        assert [job.result() for job in mine] == [b"%s:%d" % (address.encode(), n) for n in range(len(mine))]
        assert all(job.handle is not None and job.handle.server == channel.address for job in mine)


def test_a_bad_workload_or_argument_raises_before_anything_is_queued() -> None:
    session = make_session(max_packet_size=100)
    with pytest.raises(TypeError, match="int"):
        batch(session, [b"a", 2, b"c"])
    with pytest.raises(ValueError, match="exceeds"):
        batch(session, [b"a", b"x" * 100])
    with pytest.raises(ValueError, match="priority"):
        batch(session, [b"a"], priority="urgent")
    with pytest.raises(ValueError, match="NUL"):
        batch(session, [b"a"], unique=b"a\0b")
    with pytest.raises(ValueError, match="NUL"):
        batch(session, [b"a"], function="f\0g")
    assert session.take_ready() == []
    assert session.pending_count == 0
    assert batch(session, []) == []


def test_no_server_queues_nothing_and_a_closed_session_refuses_a_batch() -> None:
    session = make_session(["127.0.0.1:1", "127.0.0.1:2"])
    for address in session.router.servers:
        session.router.failed(address, 0.0)
    with pytest.raises(NoServerAvailable):
        batch(session, [b"a", b"b"])
    assert session.pending_count == 0
    session.close(ConnectionLost("closed"))
    with pytest.raises(ClientClosed):
        batch(session, [b"a"])


def test_batch_jobs_time_out_retry_and_resubmit_alone_after_a_lost_connection() -> None:
    session = make_session()
    jobs = batch(session, [b"a", b"b"], background=False, timeout=5.0, retry_count=1)
    channel = connect(session)
    sent(channel)
    session.lost(channel, ConnectionLost("reset"), 1.0)
    assert all(isinstance(job.events[-1], RetryEvent) for job in jobs)
    session.expire(1.2)  # past the retry delay: each job is encoded again on its own
    channel = connect(session, 1.2)
    assert [p.args[2] for p in sent(channel)] == [b"a", b"b"]
    feed(session, channel, created(b"H:1"), created(b"H:2"), now=1.3)
    session.expire(5.0)
    assert all(isinstance(job.error, JobTimeout) for job in jobs)


def test_unsent_batch_is_rerouted_when_its_server_cannot_be_reached() -> None:
    session = make_session(["127.0.0.1:1", "127.0.0.1:2"])
    jobs = batch(session, [b"a"] * 10)
    failed, other = session.take_ready()  # the unique keys spread the batch over both servers
    assert session.start_connecting(failed)
    assert session.start_connecting(other)
    session.connect_failed(failed, ConnectionLost("refused"), 0.0)
    assert all(job.server == other.address for job in jobs)
    session.connected(other, 0.0)
    assert sorted(p.args[1] for p in sent(other)) == sorted(job.unique for job in jobs)
