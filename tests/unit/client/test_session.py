"""ClientSession alone, no sockets: requests out, server packets in, jobs and events checked."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from gearworks.client.jobs import (
    CompleteEvent,
    CreatedEvent,
    DataEvent,
    ExceptionEvent,
    FailEvent,
    Job,
    RetryEvent,
    StatusEvent,
    SubmitOptions,
    WarningEvent,
)
from gearworks.client.routing import Router
from gearworks.client.session import Channel, ClientSession
from gearworks.codecs import JSONCodec
from gearworks.errors import (
    ClientClosed,
    ConnectionLost,
    JobException,
    JobFailed,
    JobTimeout,
    NoServerAvailable,
    ProtocolError,
    ServerError,
)
from gearworks.protocol import RES, Decoder, Packet, PacketType, encode

T = PacketType
SERVER = "127.0.0.1:4730"


def make_session(servers: list[str] | None = None, **options: object) -> ClientSession:
    return ClientSession(Router(servers or [SERVER], backoff_initial=1.0), **options)  # type: ignore[arg-type]


def submit(
    session: ClientSession, function: str = "f", workload: bytes = b"w", now: float = 0.0, **options: object
) -> Job:
    background = bool(options.pop("background", False))
    opts: SubmitOptions = options  # type: ignore[assignment]
    job = session.new_job(function, workload, background=background, options=opts)
    session.submit(job, now)
    return job


def connect(session: ClientSession, now: float = 0.0) -> Channel:
    """Connect every channel that asks for it; return the last one."""
    channel = None
    for channel in session.take_ready():
        if session.start_connecting(channel):
            session.connected(channel, now)
    session.take_ready()
    assert channel is not None
    return channel


def sent(channel: Channel) -> list[Packet]:
    return [p for p in Decoder().feed(b"".join(channel.take_out())) if isinstance(p, Packet)]


def feed(
    session: ClientSession, channel: Channel, *packets: tuple[PacketType, tuple[bytes, ...]], now: float = 0.0
) -> None:
    session.receive(channel, b"".join(encode(t, args, RES) for t, args in packets), now)


def created(handle: bytes) -> tuple[PacketType, tuple[bytes, ...]]:
    return (T.JOB_CREATED, (handle,))


def test_job_created_replies_match_submissions_in_order() -> None:
    session = make_session()
    jobs = [submit(session, workload=str(i).encode()) for i in range(3)]
    channel = connect(session)
    assert [p.args for p in sent(channel)] == [(b"f", b"", b"0"), (b"f", b"", b"1"), (b"f", b"", b"2")]
    assert session.pending_count == 3
    feed(session, channel, created(b"H:1"), created(b"H:2"), created(b"H:3"))
    assert [job.handle for job in jobs] == [b"H:1", b"H:2", b"H:3"]
    assert (session.pending_count, session.active_count) == (0, 3)
    feed(session, channel, (T.WORK_COMPLETE, (b"H:2", b"two")))
    assert [job.done for job in jobs] == [False, True, False]
    assert jobs[1].result() == b"two"
    assert session.active_count == 2


def test_error_reply_fails_only_the_submission_it_answers() -> None:
    session = make_session()
    first, second = submit(session), submit(session)
    channel = connect(session)
    feed(session, channel, (T.ERROR, (b"QUEUE_ERROR", b"Job queue is full")), created(b"H:9"))
    with pytest.raises(ServerError, match="QUEUE_ERROR: Job queue is full"):
        first.result()
    assert second.handle == b"H:9"
    assert not second.done


def test_foreground_jobs_with_one_unique_share_one_submission_and_handle() -> None:
    session = make_session()
    first = submit(session, unique=b"u", workload=b"first")
    second = submit(session, unique=b"u", workload=b"second")
    other = submit(session, "g", unique=b"u")  # same unique, other function: its own job
    channel = connect(session)
    assert [p.args[:2] for p in sent(channel)] == [(b"f", b"u"), (b"g", b"u")]
    feed(session, channel, created(b"H:1"), created(b"H:2"))
    third = submit(session, unique=b"u")  # joins the running job without a packet
    assert sent(channel) == []
    assert first.handle == second.handle == third.handle == b"H:1"
    feed(session, channel, (T.WORK_DATA, (b"H:1", b"d")), (T.WORK_COMPLETE, (b"H:1", b"r")))
    for job in (first, second, third):
        assert job.events[-2:] == [DataEvent(b"d"), CompleteEvent(b"r")]
        assert job.result() == b"r"
    assert not other.done
    fresh = submit(session, unique=b"u")  # the unique is free again once the job ended
    assert [p.args[:2] for p in sent(channel)] == [(b"f", b"u")]
    assert not fresh.done


def test_unique_dash_coalesces_on_identical_workloads() -> None:
    session = make_session()
    submit(session, unique=b"-", workload=b"same")
    submit(session, unique=b"-", workload=b"same")
    submit(session, unique=b"-", workload=b"different")
    assert len(sent(connect(session))) == 2


def test_events_and_callbacks_in_order() -> None:
    session = make_session()
    calls: list[tuple[str, object]] = []
    job = submit(
        session,
        on_created=lambda handle: calls.append(("created", handle)),
        on_data=lambda data: calls.append(("data", data)),
        on_warning=lambda data: calls.append(("warning", data)),
        on_status=lambda n, d: calls.append(("status", (n, d))),
        on_complete=lambda result: calls.append(("complete", result)),
    )
    channel = connect(session)
    feed(
        session,
        channel,
        created(b"H:1"),
        (T.WORK_DATA, (b"H:1", b"a\0b")),
        (T.WORK_WARNING, (b"H:1", b"careful")),
        (T.WORK_STATUS, (b"H:1", b"3", b"10")),
        (T.WORK_STATUS, (b"H:1", b"7x", b"abc")),  # gearmand forwards raw text; read like atoi
        (T.WORK_COMPLETE, (b"H:1", b"")),
    )
    assert job.events == [
        CreatedEvent(b"H:1"),  # type: ignore[arg-type]
        DataEvent(b"a\0b"),
        WarningEvent(b"careful"),
        StatusEvent(3, 10),
        StatusEvent(7, 0),
        CompleteEvent(b""),
    ]
    assert calls == [
        ("created", b"H:1"),
        ("data", b"a\0b"),
        ("warning", b"careful"),
        ("status", (3, 10)),
        ("status", (7, 0)),
        ("complete", b""),
    ]
    assert job.status == (7, 0)


def test_callback_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    session = make_session()
    job = submit(session, on_created=lambda handle: 1 / 0)
    feed(session, connect(session), created(b"H:1"))
    assert job.handle == b"H:1"
    assert "job callback for CreatedEvent raised" in caplog.text


def test_work_fail_resubmits_after_a_doubling_delay_up_to_retry_count_then_fails() -> None:
    session = make_session(retry_delay=0.5, retry_delay_max=0.8)
    retries: list[int] = []
    job = submit(session, retry_count=3, on_retry=retries.append)
    channel = connect(session)
    packet = sent(channel)
    now = 10.0
    for attempt, (handle, delay) in enumerate([(b"H:1", 0.5), (b"H:2", 0.8), (b"H:3", 0.8)], start=1):
        feed(session, channel, created(handle), (T.WORK_FAIL, (handle,)), now=now)
        assert retries == list(range(1, attempt + 1))
        assert isinstance(job.events[-1], RetryEvent)
        assert sent(channel) == []  # not at once: after the delay (0.5, doubled, capped at 0.8)
        assert session.next_deadline() == pytest.approx(now + delay)
        assert session.expire(now + delay - 0.01) == []
        assert sent(channel) == []
        session.expire(now + delay)
        assert sent(channel) == packet  # the same submission again
        now += delay
    feed(session, channel, created(b"H:4"), (T.WORK_FAIL, (b"H:4\0",)))  # gearmand's trailing NUL (§3.7)
    with pytest.raises(JobFailed, match="H:4"):
        job.result()
    assert isinstance(job.events[-1], FailEvent)
    assert session.next_deadline() is None


def test_a_job_waiting_for_its_retry_fails_on_close_and_keeps_its_timeout() -> None:
    session = make_session(retry_delay=5.0)
    waiting = submit(session, retry_count=1)
    timed = submit(session, retry_count=1, timeout=2.0)
    channel = connect(session)
    feed(session, channel, created(b"H:1"), created(b"H:2"), (T.WORK_FAIL, (b"H:1",)), (T.WORK_FAIL, (b"H:2",)))
    session.expire(2.0)  # the timeout comes first: no resubmission
    with pytest.raises(JobTimeout):
        timed.result()
    session.close(ConnectionLost("closed"))
    with pytest.raises(ConnectionLost, match="closed"):
        waiting.result()
    session.expire(10.0)
    assert sent(channel) == []


def test_work_exception_is_an_event_then_a_job_exception() -> None:
    session = make_session(exceptions=True)
    job = submit(session)
    channel = connect(session)
    feed(session, channel, (T.OPTION_RES, (b"exceptions",)), created(b"H:1"), (T.WORK_EXCEPTION, (b"H:1", b"boom")))
    assert ExceptionEvent(b"boom") in job.events
    with pytest.raises(JobException) as caught:
        job.result()
    assert caught.value.data == b"boom"
    assert caught.value.handle == b"H:1"


def test_exceptions_option_goes_first_on_every_connection() -> None:
    session = make_session(exceptions=True)
    job = submit(session)  # queued before the connection exists
    channel = connect(session)
    assert [p.type for p in sent(channel)] == [T.OPTION_REQ, T.SUBMIT_JOB]
    feed(session, channel, (T.OPTION_RES, (b"exceptions",)), created(b"H:1"))
    session.lost(channel, ConnectionLost("gone"), 1.0)
    assert job.done  # no retries left
    submit(session, now=1.0)
    channel = connect(session, 1.0)
    assert [p.type for p in sent(channel)] == [T.OPTION_REQ, T.SUBMIT_JOB]


def test_option_request_is_answered_in_order() -> None:
    session = make_session()
    submit(session)
    channel = connect(session)
    sent(channel)
    call = session.option(b"exceptions", 0.0)
    assert [p.type for p in sent(channel)] == [T.OPTION_REQ]
    feed(session, channel, created(b"H:1"), (T.OPTION_RES, (b"exceptions",)))
    assert call.done
    assert call.result() is None
    bad = session.option(b"bogus", 0.0)
    feed(session, channel, (T.ERROR, (b"UNKNOWN_OPTION", b"Server does not recognize given option")))
    with pytest.raises(ServerError, match="UNKNOWN_OPTION"):
        bad.result()
    assert session.options == [b"exceptions"]
    perl = session.option(b"other", 0.0)
    feed(session, channel, (T.ERROR, (b"unknown_option", b"")))  # the Perl Gearman::Server's spelling
    with pytest.raises(ServerError, match="unknown_option"):
        perl.result()
    assert session.options == [b"exceptions"]


def test_lost_connection_retries_sent_jobs_and_reroutes_unsent_ones() -> None:
    session = make_session(["127.0.0.1:1", "127.0.0.1:2"])
    sent_job = submit(session, unique=b"k", retry_count=1)
    first = connect(session)
    sent(first)
    unsent_job = submit(session, unique=b"k2" if session.router.pick(0.0, b"k2") == first.address else b"k")
    assert unsent_job.server == first.address
    no_retry = submit(session, unique=b"k")
    sent(first)
    again = submit(session, unique=b"k3" if session.router.pick(0.0, b"k3") == first.address else b"k")
    session.lost(first, ConnectionLost("reset"), 1.0)
    assert isinstance(sent_job.events[-1], RetryEvent)
    assert not sent_job.done
    assert no_retry.done
    with pytest.raises(ConnectionLost, match="lost"):
        no_retry.result()
    assert not again.done
    assert again.attempts == 0  # never written: routed again without using a retry


def test_connect_failure_backs_off_and_reroutes_to_another_server() -> None:
    session = make_session(["127.0.0.1:1", "127.0.0.1:2"])
    job = submit(session)
    (channel,) = session.take_ready()
    assert session.start_connecting(channel)
    session.connect_failed(channel, ConnectionLost("refused"), 0.0)
    assert job.server != channel.address
    other = connect(session)
    assert other.address == job.server
    assert [p.args[2] for p in sent(other)] == [b"w"]
    assert all(submit(session, now=0.1).server == other.address for _ in range(3))


def test_no_server_left_fails_the_rerouted_job() -> None:
    session = make_session()
    job = submit(session)
    (channel,) = session.take_ready()
    assert session.start_connecting(channel)
    session.connect_failed(channel, ConnectionLost("refused"), 0.0)
    with pytest.raises(NoServerAvailable):
        job.result()


def test_status_echo_and_unique_status_replies() -> None:
    session = make_session()
    echo = session.echo(b"ping\0", 0.0)
    status = session.get_status(b"H:5", 0.0)
    by_unique = session.get_status_unique(b"u1", 0.0)
    channel = connect(session)
    assert [p.type for p in sent(channel)] == [T.ECHO_REQ, T.GET_STATUS, T.GET_STATUS_UNIQUE]
    feed(
        session,
        channel,
        (T.ECHO_RES, (b"ping\0",)),
        (T.STATUS_RES, (b"H:5", b"1", b"1", b"50", b"100")),
        (T.STATUS_RES_UNIQUE, (b"u1", b"1", b"0", b"0", b"0", b"2")),
    )
    assert echo.result() == b"ping\0"
    assert (status.result().known, status.result().running, status.result().numerator) == (True, True, 50)
    assert by_unique.result().client_count == 2


def test_status_of_a_plain_handle_asks_every_server_and_takes_the_one_that_knows() -> None:
    session = make_session(["127.0.0.1:1", "127.0.0.1:2"])
    call = session.get_status(b"H:7", 0.0)
    connect(session)
    channels = list(session.channels.values())
    feed(session, channels[0], (T.STATUS_RES, (b"H:7", b"1", b"0", b"0", b"0")))
    feed(session, channels[1], (T.STATUS_RES, (b"H:7", b"0", b"0", b"0", b"0")))
    assert call.result().known


def test_job_timeout_fails_the_job_and_ignores_its_late_result() -> None:
    session = make_session()
    job = submit(session, timeout=2.0, now=10.0)
    channel = connect(session)
    feed(session, channel, created(b"H:1"))
    assert session.next_deadline() == 12.0
    session.expire(11.9)
    assert not job.done
    session.expire(12.0)
    with pytest.raises(JobTimeout):
        job.result()
    feed(session, channel, (T.WORK_COMPLETE, (b"H:1", b"late")))
    assert session.active_count == 0


def test_command_timeout_treats_a_silent_server_as_lost() -> None:
    session = make_session(command_timeout=5.0)
    job = submit(session)
    channel = connect(session)
    sent(channel)
    assert session.expire(4.0) == []
    assert session.expire(5.0) == [channel]
    with pytest.raises(ConnectionLost, match="no reply"):
        job.result()


def test_close_fails_every_pending_and_active_job() -> None:
    session = make_session()
    active, pending = submit(session), submit(session)
    queued_call = session.echo(b"", 0.0)
    channel = connect(session)
    feed(session, channel, created(b"H:1"))
    assert session.close(ConnectionLost("closed")) == [channel]
    for outcome in (active, pending, queued_call):
        with pytest.raises(ConnectionLost, match="closed"):
            outcome.result()
    with pytest.raises(ClientClosed, match="closed"):
        submit(session)
    session.reopen(0.0)
    assert session.take_ready()  # every server listed to connect again
    assert not submit(session).done


def test_reply_nobody_asked_for_is_a_protocol_error() -> None:
    session = make_session()
    submit(session)
    channel = connect(session)
    with pytest.raises(ProtocolError, match=r"ECHO_RES .* where JOB_CREATED was due"):
        feed(session, channel, (T.ECHO_RES, (b"x",)))
    with pytest.raises(ProtocolError, match="answers no request"):
        feed(make_session(), channel, created(b"H:1"))


def test_background_jobs_get_a_unique_of_their_own_unless_one_is_given() -> None:
    session = make_session()
    a, b = submit(session, background=True), submit(session, background=True)
    explicit = submit(session, background=True, unique=b"")
    assert a.unique.startswith(session._unique_prefix)
    assert len(session._unique_prefix) == 32
    assert a.unique != b.unique
    assert explicit.unique == b""
    channel = connect(session)
    assert [p.type for p in sent(channel)] == [T.SUBMIT_JOB_BG] * 3
    feed(session, channel, created(b"H:1"), created(b"H:2"), created(b"H:3"))
    assert a.result() == b"H:1"
    assert session.active_count == 0


def test_priorities_epoch_and_bad_arguments() -> None:
    session = make_session()
    for priority, background, ptype in [
        ("high", False, T.SUBMIT_JOB_HIGH),
        ("low", False, T.SUBMIT_JOB_LOW),
        ("high", True, T.SUBMIT_JOB_HIGH_BG),
        ("low", True, T.SUBMIT_JOB_LOW_BG),
    ]:
        job = session.new_job("f", b"", background=background, options={"priority": priority})  # type: ignore[typeddict-item]
        assert Decoder().feed(b"".join(job.packet)).__next__().type is ptype  # type: ignore[union-attr]
    epoch = session.new_job("f", b"x", when=1795373091.0, options={"unique": b"e1"})
    assert next(iter(Decoder().feed(b"".join(epoch.packet)))) == Packet(
        T.SUBMIT_JOB_EPOCH, (b"f", b"e1", b"1795373091", b"x")
    )
    assert epoch.background
    with pytest.raises(ValueError, match="priority"):
        session.new_job("f", b"", options={"priority": "urgent"})  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="normal priority"):
        session.new_job("f", b"", when=1.0, options={"priority": "high"})
    with pytest.raises(ValueError, match="NUL"):
        session.new_job("f\0g", b"", options={})


def test_payload_over_the_packet_limit_is_refused_before_anything_is_queued() -> None:
    session = make_session(max_packet_size=1024)
    with pytest.raises(ValueError, match="exceeds the 1024-byte packet limit"):
        session.new_job("f", b"x" * 1024, options={})
    assert session.take_ready() == []
    largest = session.new_job("f", b"x" * 1021, options={})  # f NUL NUL + 1021 bytes: exactly the limit
    assert sum(map(len, largest.packet)) == 12 + 1024


def test_option_before_any_connection_is_answered_on_the_first_one() -> None:
    session = make_session()
    call = session.option(b"exceptions", 0.0)
    channel = connect(session)
    assert [p.type for p in sent(channel)] == [T.OPTION_REQ]
    feed(session, channel, (T.OPTION_RES, (b"exceptions",)))
    assert call.done
    assert call.result() is None


def test_replacing_servers_closes_idle_channels_and_keeps_busy_ones() -> None:
    session = make_session(["127.0.0.1:1", "127.0.0.1:2"])
    for _ in range(2):
        submit(session)
    channels = {channel.address.port: channel for channel in session.take_ready()}
    for channel in channels.values():
        assert session.start_connecting(channel)
        session.connected(channel, 0.0)
        sent(channel)
    feed(session, channels[1], created(b"H:1"), (T.WORK_COMPLETE, (b"H:1", b"")))
    assert session.replace_servers(["127.0.0.1:3"]) == [channels[1]]  # port 2 still has a job in flight
    assert submit(session).server.port == 3  # type: ignore[union-attr]
    feed(session, channels[2], created(b"H:2"), (T.WORK_COMPLETE, (b"H:2", b"done")))
    assert session.active_count == 0


@pytest.mark.parametrize(("when", "sent_as"), [(1795373091.7, b"1795373092"), (1795373091.001, b"1795373092")])
def test_epoch_when_is_rounded_up_so_the_job_never_runs_early(when: float, sent_as: bytes) -> None:
    epoch = make_session().new_job("f", b"x", when=when, options={"unique": b"e1"})
    assert next(iter(Decoder().feed(b"".join(epoch.packet)))) == Packet(
        T.SUBMIT_JOB_EPOCH, (b"f", b"e1", sent_as, b"x")
    )


def test_background_job_fires_only_on_created_and_its_events_end_there() -> None:
    session = make_session()
    calls: list[str] = []
    job = submit(
        session,
        background=True,
        on_created=lambda handle: calls.append("created"),
        on_complete=lambda result: calls.append("complete"),
    )
    channel = connect(session)
    feed(session, channel, created(b"H:1"))
    assert calls == ["created"]
    assert job.events == [CreatedEvent(job.handle)]  # type: ignore[arg-type]
    assert job.result() == b"H:1"

    async def stream() -> list[object]:
        return [event async for event in job]

    assert asyncio.run(stream()) == [CreatedEvent(job.handle)]  # type: ignore[arg-type]


class _Result:
    """A decoded result that can be watched with a weakref (bytes cannot)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class _ResultCodec:
    def encode(self, obj: Any, /) -> bytes:
        return bytes(obj)

    def decode(self, data: bytes, /) -> _Result:
        return _Result(data)


def test_finished_jobs_with_long_timeouts_leave_the_timer_heap() -> None:
    session = make_session(codec=_ResultCodec())
    channel = connect_with(session, submit(session, timeout=3600.0))
    watched: list[weakref.ref[_Result]] = []
    for round_ in range(10):
        jobs = [submit(session, workload=b"w", timeout=3600.0) for _ in range(100)]
        sent(channel)
        handles = [b"H:%d:%d" % (round_, i) for i in range(100)]
        feed(session, channel, *(created(handle) for handle in handles))
        feed(session, channel, *((T.WORK_COMPLETE, (handle, b"r")) for handle in handles))
        watched.extend(weakref.ref(job.result()) for job in jobs)
        del jobs
    gc.collect()
    assert all(ref() is None for ref in watched)  # no finished job (nor its result) is kept until its timeout
    assert len(session._timers) <= 2 * 64 + 2  # cleared entries are compacted away


def connect_with(session: ClientSession, job: Job) -> Channel:
    channel = connect(session)
    sent(channel)
    feed(session, channel, created(b"H:first"))
    assert not job.done
    return channel


def test_codec_encodes_workloads_and_decodes_results_and_data_only() -> None:
    session = make_session(codec=JSONCodec(), exceptions=True)
    job = submit(session, workload={"n": [1, 2]})  # type: ignore[arg-type]
    channel = connect(session)
    assert sent(channel)[-1].args == (b"f", b"", b'{"n":[1,2]}')
    feed(
        session,
        channel,
        (T.OPTION_RES, (b"exceptions",)),
        created(b"H:1"),
        (T.WORK_DATA, (b"H:1", b"[1]")),
        (T.WORK_WARNING, (b"H:1", b"raw")),
        (T.WORK_COMPLETE, (b"H:1", b'{"ok":true}')),
    )
    assert job.result() == {"ok": True}
    assert DataEvent([1]) in job.events
    assert WarningEvent(b"raw") in job.events
    bad = submit(session, workload=None)  # type: ignore[arg-type]
    feed(session, channel, created(b"H:2"), (T.WORK_COMPLETE, (b"H:2", b"not json")))
    with pytest.raises(JobFailed, match="cannot decode") as caught:
        bad.result()
    assert isinstance(caught.value.__cause__, ValueError)


def test_workloads_of_other_types_raise_type_error_naming_the_type_without_a_codec() -> None:
    session = make_session()
    for workload, name in ((5, "int"), ([104, 105], "list"), ({"a": 1}, "dict")):
        with pytest.raises(TypeError, match=name):
            submit(session, workload=workload)  # type: ignore[arg-type]
    assert session.take_ready() == []  # nothing queued
    for accepted in (b"hi", bytearray(b"hi"), memoryview(b"hi"), "hi"):
        submit(session, workload=accepted)  # type: ignore[arg-type]
    assert [p.args[2] for p in sent(connect(session))] == [b"hi"] * 4
