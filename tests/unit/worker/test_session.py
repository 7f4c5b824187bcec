"""The worker session alone, no sockets: registrations, the grab/sleep/wake cycle, the concurrency cap, what each
handler outcome sends, and what a reconnect re-sends."""

from __future__ import annotations

import pickle

import pytest

from gearworks.codecs import JSONCodec
from gearworks.connection import ServerAddress
from gearworks.protocol import RES, Decoder, Packet, PacketType
from gearworks.worker import WorkerJob
from gearworks.worker.session import GrabMode, Outcome, ServerLink, WorkerSession

T = PacketType


class Wire:
    """A fake connection: decodes and records every packet the session queues for its link. Taking drains the
    session as a driver does, handing every ready link's bytes to the wire connected to it."""

    def __init__(self, session: WorkerSession) -> None:
        self.session = session
        self.decoder = Decoder()
        self.packets: list[Packet] = []
        self.writes = 0

    def write(self, chunks: list[bytes]) -> None:
        self.writes += 1
        for chunk in chunks:
            self.packets.extend(p for p in self.decoder.feed(chunk) if isinstance(p, Packet))

    def take(self) -> list[tuple[PacketType, tuple[bytes, ...]]]:
        drain(self.session)
        taken = [(p.type, p.args) for p in self.packets]
        self.packets.clear()
        return taken


_WIRES: dict[ServerLink, Wire] = {}


def plug(session: WorkerSession, link: ServerLink, wire: Wire) -> None:
    """Connect ``link`` with ``wire`` as its connection."""
    _WIRES[link] = wire
    session.connected(link)


def drain(session: WorkerSession) -> None:
    for link in session.take_ready():
        _WIRES[link].write(link.take_out())


def finished(session: WorkerSession) -> bool:
    """``session.finished`` read afresh (the calls between two reads change it behind the type checker's back)."""
    return session.finished


def res(ptype: PacketType, *args: bytes) -> Packet:
    return Packet(ptype, args, RES)


def make(
    servers: int = 1, *, concurrency: int = 1, grab: GrabMode = "uniq", **settings: object
) -> tuple[WorkerSession, list[Wire]]:
    session = WorkerSession(
        [ServerAddress("127.0.0.1", 4730 + n) for n in range(servers)],
        concurrency=concurrency,
        grab=grab,
        **settings,  # type: ignore[arg-type]
    )
    return session, [Wire(session) for _ in range(servers)]


def connect(session: WorkerSession, wires: list[Wire]) -> None:
    for link, wire in zip(session.links, wires, strict=True):
        plug(session, link, wire)


def assign(
    session: WorkerSession, link: ServerLink, handle: bytes, function: bytes = b"f", data: bytes = b"w"
) -> WorkerJob:
    job = session.receive(link, res(T.JOB_ASSIGN_UNIQ, handle, function, b"u-" + handle, data))
    assert job is not None
    return job


def noop_handler(job: WorkerJob) -> bytes:
    return b""


def ready(servers: int = 1, **settings: object) -> tuple[WorkerSession, list[Wire]]:
    """A started session serving ``f``, connected to fake wires."""
    session, wires = make(servers, **settings)  # type: ignore[arg-type]
    session.register("f", noop_handler)
    session.start()
    connect(session, wires)
    return session, wires


def test_connect_sends_client_id_option_and_every_registration_then_grabs() -> None:
    session, wires = make(concurrency=2, client_id=b"w-1")
    session.register("f", noop_handler)
    session.register(b"g", noop_handler, timeout=2.5)
    session.start()
    connect(session, wires)
    assert wires[0].take() == [
        (T.SET_CLIENT_ID, (b"w-1",)),
        (T.OPTION_REQ, (b"exceptions",)),
        (T.CAN_DO, (b"f",)),
        (T.CAN_DO_TIMEOUT, (b"g", b"3")),  # whole seconds, rounded up
        (T.GRAB_JOB_UNIQ, ()),
        (T.GRAB_JOB_UNIQ, ()),
    ]
    assert wires[0].writes == 1  # handshake and grabs in one write


def test_registering_while_connected_sends_at_once_and_prefix_is_tab_joined() -> None:
    session, wires = make(prefix=b"app")
    session.start()
    connect(session, wires)
    assert wires[0].take() == [(T.OPTION_REQ, (b"exceptions",))]  # nothing to grab for yet
    session.register("f", noop_handler)
    assert wires[0].take() == [(T.CAN_DO, (b"app\tf",)), (T.GRAB_JOB_UNIQ, ())]
    assert session.unregister("f")
    assert not session.unregister("f")
    session.reset_abilities()
    session.set_client_id(b"id two")
    session.all_yours()
    assert wires[0].take() == [
        (T.CANT_DO, (b"app\tf",)),
        (T.RESET_ABILITIES, ()),
        (T.SET_CLIENT_ID, (b"id two",)),
        (T.ALL_YOURS, ()),
    ]


@pytest.mark.parametrize("name", ["", "a\0b"])
def test_bad_function_names_raise(name: str) -> None:
    session, _ = make()
    with pytest.raises(ValueError, match="function name"):
        session.register(name, noop_handler)


def test_no_job_sleeps_after_the_last_grab_and_noop_wakes() -> None:
    session, wires = ready(concurrency=3, exceptions=False)
    link, wire = session.links[0], wires[0]
    wire.take()
    session.receive(link, res(T.NO_JOB))
    session.receive(link, res(T.NO_JOB))
    assert wire.take() == []  # a grab is still out
    session.receive(link, res(T.NO_JOB))
    assert wire.take() == [(T.PRE_SLEEP, ())]
    session.receive(link, res(T.NOOP))
    assert wire.take() == [(T.GRAB_JOB_UNIQ, ())] * 3


@pytest.mark.parametrize(("grab", "packet"), [("job", T.GRAB_JOB), ("all", T.GRAB_JOB_ALL)])
def test_grab_modes(grab: GrabMode, packet: PacketType) -> None:
    _session, wires = ready(grab=grab, exceptions=False)
    assert wires[0].take() == [(T.CAN_DO, (b"f",)), (packet, ())]


def test_job_assign_variants_fill_the_job() -> None:
    session, _wires = ready(concurrency=3, exceptions=False)
    link = session.links[0]
    plain = session.receive(link, res(T.JOB_ASSIGN, b"H:1", b"f", b"w1"))
    uniq = session.receive(link, res(T.JOB_ASSIGN_UNIQ, b"H:2", b"f", b"u2", b"w2"))
    full = session.receive(link, res(T.JOB_ASSIGN_ALL, b"H:3", b"f", b"u3", b"red", b"w\x003"))
    assert plain is not None
    assert uniq is not None
    assert full is not None
    assert (plain.handle, plain.function, plain.unique, plain.workload, plain.reducer) == (
        b"H:1",
        b"f",
        b"",
        b"w1",
        None,
    )
    assert (uniq.unique, uniq.workload) == (b"u2", b"w2")
    assert (full.unique, full.reducer, full.workload) == (b"u3", b"red", b"w\x003")


def test_concurrency_cap_never_grabs_a_job_that_cannot_start() -> None:
    session, wires = ready(concurrency=2, exceptions=False)
    link, wire = session.links[0], wires[0]
    assert wire.take()[-2:] == [(T.GRAB_JOB_UNIQ, ())] * 2
    first = assign(session, link, b"H:1")
    assign(session, link, b"H:2")
    session.receive(link, res(T.NOOP))
    assert wire.take() == []  # both slots busy
    assert session.free_slots() == 0
    session.job_returned(first, Outcome(b"ok"))
    assert wire.take() == [(T.WORK_COMPLETE, (b"H:1", b"ok")), (T.GRAB_JOB_UNIQ, ())]


def test_result_and_next_grab_leave_in_one_write() -> None:
    session, wires = ready(exceptions=False)
    job = assign(session, session.links[0], b"H:1")
    drain(session)
    writes = wires[0].writes
    session.job_returned(job, Outcome("héllo"))
    drain(session)
    assert wires[0].writes == writes + 1
    assert wires[0].take()[-2:] == [(T.WORK_COMPLETE, (b"H:1", "héllo".encode())), (T.GRAB_JOB_UNIQ, ())]


@pytest.mark.parametrize(
    ("value", "codec", "sent"),
    [
        (b"raw\x00bytes", None, (T.WORK_COMPLETE, (b"H:1", b"raw\x00bytes"))),
        ("text", None, (T.WORK_COMPLETE, (b"H:1", b"text"))),
        (bytearray(b"ba"), None, (T.WORK_COMPLETE, (b"H:1", b"ba"))),
        (None, None, (T.WORK_COMPLETE, (b"H:1", b""))),
        ({"a": [1, 2]}, JSONCodec(), (T.WORK_COMPLETE, (b"H:1", b'{"a":[1,2]}'))),
        ("text", JSONCodec(), (T.WORK_COMPLETE, (b"H:1", b'"text"'))),
        (None, JSONCodec(), (T.WORK_COMPLETE, (b"H:1", b"null"))),
    ],
)
def test_return_values_become_work_complete(value: object, codec: object, sent: tuple[object, ...]) -> None:
    session, wires = ready(exceptions=False, codec=codec)
    job = assign(session, session.links[0], b"H:1")
    wires[0].take()
    session.job_returned(job, Outcome(value))
    assert wires[0].take()[0] == sent


def test_non_bytes_result_without_a_codec_fails_the_job_with_a_clear_error() -> None:
    session, wires = ready()
    link = session.links[0]
    session.receive(link, res(T.OPTION_RES, b"exceptions"))
    job = assign(session, link, b"H:1")
    wires[0].take()
    session.job_returned(job, Outcome(42))
    (exception, fail, _grab) = wires[0].take()
    assert exception[0] is T.WORK_EXCEPTION
    assert b"TypeError" in exception[1][1]
    assert b"returned int" in exception[1][1]
    assert fail == (T.WORK_FAIL, (b"H:1",))


def test_raise_sends_exception_then_fail_when_the_server_forwards_exceptions() -> None:
    session, wires = ready()
    link = session.links[0]
    session.receive(link, res(T.OPTION_RES, b"exceptions"))
    job = assign(session, link, b"H:1")
    wires[0].take()
    session.job_returned(job, Outcome(error=ValueError("boom")))
    assert wires[0].take() == [
        (T.WORK_EXCEPTION, (b"H:1", b"ValueError: boom")),
        (T.WORK_FAIL, (b"H:1",)),
        (T.GRAB_JOB_UNIQ, ()),
    ]
    assert session.running == 0


def test_raise_sends_only_fail_when_the_server_refused_the_option() -> None:
    session, wires = ready()
    link = session.links[0]
    session.receive(link, res(T.ERROR, b"UNKNOWN_OPTION", b"Server does not recognize given option"))
    job = assign(session, link, b"H:1")
    wires[0].take()
    session.job_returned(job, Outcome(error=RuntimeError("x")))
    assert wires[0].take()[:1] == [(T.WORK_FAIL, (b"H:1",))]


def test_job_methods_send_updates_and_an_ended_job_ignores_the_return_value() -> None:
    session, wires = ready(exceptions=False)
    job = assign(session, session.links[0], b"H:1")
    wires[0].take()
    job.status(3, 10)
    job.data(b"part")
    job.warning("careful")
    job.complete("final")
    job.fail()  # ignored: already ended
    session.job_returned(job, Outcome(b"ignored"))
    assert wires[0].take() == [
        (T.WORK_STATUS, (b"H:1", b"3", b"10")),
        (T.WORK_DATA, (b"H:1", b"part")),
        (T.WORK_WARNING, (b"H:1", b"careful")),
        (T.WORK_COMPLETE, (b"H:1", b"final")),
        (T.GRAB_JOB_UNIQ, ()),
    ]


def test_reconnect_resends_everything_and_drops_lost_jobs_output() -> None:
    session, wires = make(concurrency=2, client_id=b"me")
    session.register("f", noop_handler, timeout=30)
    session.start()
    connect(session, wires)
    link = session.links[0]
    job = assign(session, link, b"H:1")
    session.disconnected(link, now=100.0)
    assert session.reserved == 0
    assert session.running == 1
    assert not link.backoff.available(100.0)
    assert session.take_ready() == []  # what was queued for the lost connection is gone
    fresh = Wire(session)
    plug(session, link, fresh)
    assert fresh.take() == [
        (T.SET_CLIENT_ID, (b"me",)),
        (T.OPTION_REQ, (b"exceptions",)),
        (T.CAN_DO_TIMEOUT, (b"f", b"30")),
        (T.GRAB_JOB_UNIQ, ()),  # one slot is still taken by the lost job's handler
    ]
    job.data(b"late")
    session.job_returned(job, Outcome(b"late result"))
    assert fresh.take() == [(T.GRAB_JOB_UNIQ, ())]  # nothing about H:1: the server requeued it


def test_two_servers_share_slots_in_turn() -> None:
    session, wires = ready(servers=2, exceptions=False)
    first = [wire.take().count((T.GRAB_JOB_UNIQ, ())) for wire in wires]
    assert first == [1, 0]
    job = assign(session, session.links[0], b"H:1")
    session.job_returned(job, Outcome(b""))
    assert [wire.take().count((T.GRAB_JOB_UNIQ, ())) for wire in wires] == [0, 1]
    session.receive(session.links[1], res(T.NO_JOB))
    assert wires[1].take() == [(T.PRE_SLEEP, ())]
    assert wires[0].take() == [(T.GRAB_JOB_UNIQ, ())]  # the freed slot goes to the awake server


def test_max_jobs_limits_grabs_and_stop_drains() -> None:
    session, wires = make(concurrency=4, exceptions=False)
    session.register("f", noop_handler)
    session.start(max_jobs=1)
    connect(session, wires)
    assert wires[0].take().count((T.GRAB_JOB_UNIQ, ())) == 1
    job = assign(session, session.links[0], b"H:1")
    assert not session.accepting
    assert not finished(session)
    session.receive(session.links[0], res(T.NOOP))
    assert wires[0].take() == []
    session.job_returned(job, Outcome(b"done"))
    assert wires[0].take() == [(T.WORK_COMPLETE, (b"H:1", b"done"))]
    assert finished(session)
    assert session.handled == 1


def test_stop_with_a_grab_outstanding_waits_for_its_answer() -> None:
    session, wires = ready(exceptions=False)
    session.stop()
    assert not session.finished  # the GRAB's answer may still be a job to run
    session.receive(session.links[0], res(T.NO_JOB))
    assert wires[0].take()[-1] == (T.GRAB_JOB_UNIQ, ())  # no PRE_SLEEP while stopping
    assert finished(session)


def test_assignment_for_an_unregistered_function_is_failed() -> None:
    session, wires = ready(exceptions=False)
    wires[0].take()
    assert session.receive(session.links[0], res(T.JOB_ASSIGN, b"H:9", b"gone", b"")) is None
    assert wires[0].take() == [(T.WORK_FAIL, (b"H:9",)), (T.GRAB_JOB_UNIQ, ())]


def test_detached_job_copy_cannot_send() -> None:
    session, _wires = ready(exceptions=False)
    job = assign(session, session.links[0], b"H:1", data=b"payload")
    copy = pickle.loads(pickle.dumps(job))
    assert (copy.handle, copy.function, copy.unique, copy.workload) == (b"H:1", b"f", b"u-H:1", b"payload")
    with pytest.raises(RuntimeError, match="detached"):
        copy.data(b"x")


def test_errors_are_matched_to_requests_in_order() -> None:
    """A server that refuses GRAB_JOB_UNIQ (the Perl Gearman::Server) gets GRAB_JOB; ERRORs answering WORK_* or
    OPTION_REQ are not mistaken for GRAB replies."""
    session, wires = ready()
    link, wire = session.links[0], wires[0]
    wire.take()
    session.receive(link, res(T.ERROR, b"UNKNOWN_OPTION", b"no"))  # answers OPTION_REQ
    assert wire.take() == []
    session.receive(link, res(T.ERROR, b"server_error", b"no CMD_grab_job_uniq"))  # answers the GRAB
    assert wire.take() == [(T.GRAB_JOB, ())]
    job = session.receive(link, res(T.JOB_ASSIGN, b"H:1", b"f", b"w"))
    assert job is not None
    job.data(b"d")
    session.job_returned(job, Outcome(error=ValueError("x")))
    assert wire.take() == [(T.WORK_DATA, (b"H:1", b"d")), (T.WORK_FAIL, (b"H:1",)), (T.GRAB_JOB, ())]
    session.receive(link, res(T.ERROR, b"server_error", b"no CMD_work_data"))  # answers WORK_DATA
    session.receive(link, res(T.ERROR, b"JOB_NOT_FOUND", b"gone"))  # answers WORK_FAIL
    assert link.outstanding == 1
    session.receive(link, res(T.NO_JOB))
    assert wire.take() == [(T.PRE_SLEEP, ())]
    assert link.outstanding == 0
    session.all_yours()
    session.receive(link, res(T.ERROR, b"INVALID_COMMAND", b"Command not expected"))
    assert list(link.replies) == []


def test_registering_a_name_again_replaces_it() -> None:
    session, wires = ready(exceptions=False)
    wires[0].take()
    session.register("f", lambda job: b"new handler")  # same registration on the server: nothing sent
    session.register("f", noop_handler, timeout=5)
    assert wires[0].take() == [(T.CANT_DO, (b"f",)), (T.CAN_DO_TIMEOUT, (b"f", b"5"))]


def test_sleeps_when_a_job_answers_the_last_grab_after_a_no_job() -> None:
    """NO_JOB to one GRAB, then a job (submitted meanwhile) to the last one: PRE_SLEEP must still go out, or no NOOP
    ever wakes the worker for the jobs queued later."""
    session, wires = ready(concurrency=2, exceptions=False)
    link, wire = session.links[0], wires[0]
    wire.take()
    session.receive(link, res(T.NO_JOB))
    assert wire.take() == []
    job = assign(session, link, b"H:1")
    assert wire.take() == [(T.PRE_SLEEP, ())]
    session.job_returned(job, Outcome(b""))
    assert wire.take() == [(T.WORK_COMPLETE, (b"H:1", b""))]  # asleep: no GRAB until NOOP
    session.receive(link, res(T.NOOP))
    assert wire.take() == [(T.GRAB_JOB_UNIQ, ())] * 2


def test_a_server_that_ignores_the_option_still_gets_grabs_counted() -> None:
    session, wires = ready(concurrency=2)
    link, wire = session.links[0], wires[0]
    wire.take()
    session.receive(link, res(T.NO_JOB))  # no OPTION_RES came first: that reply is never coming
    session.receive(link, res(T.NO_JOB))
    assert wire.take() == [(T.PRE_SLEEP, ())]
    assert link.outstanding == 0
    assert session.reserved == 0
    assert not link.exceptions


def test_a_worker_keeps_retrying_at_the_cap_through_2000_failed_connects() -> None:
    """Two thousand failed attempts (hours of outage, time passed in): every retry is still scheduled, at the cap,
    and the first connection that works resets the backoff and serves."""
    session, wires = make(reconnect_delay=0.1, max_reconnect_delay=10.0)
    session.register("f", noop_handler)
    session.start()
    link = session.links[0]
    now = 0.0
    for _ in range(2000):
        assert session.wants_connection(link)
        session.connect_failed(link, now)
        delay = link.backoff.delay(now)
        assert 0 < delay <= 10.0
        now += delay
    assert delay >= 5.0  # at the cap (jitter: 50 to 100 %)
    assert link.backoff.available(now)
    plug(session, link, wires[0])
    assert (T.GRAB_JOB_UNIQ, ()) in wires[0].take()
    assert link.backoff.failures == 0


def test_a_codec_decodes_the_workload_into_value_and_encodes_the_result() -> None:
    session, wires = ready(exceptions=False, codec=JSONCodec())
    job = assign(session, session.links[0], b"H:1", data=b'{"n":[1,2]}')
    assert job.workload == b'{"n":[1,2]}'  # the bytes stay as the server sent them
    assert job.value == {"n": [1, 2]}
    assert pickle.loads(pickle.dumps(job)).value == {"n": [1, 2]}  # a process pool's copy decodes too
    wires[0].take()
    session.job_returned(job, Outcome({"sum": 3}))
    assert wires[0].take()[0] == (T.WORK_COMPLETE, (b"H:1", b'{"sum":3}'))
    plain, _ = ready()
    assert assign(plain, plain.links[0], b"H:2", data=b"raw").value == b"raw"  # default: the bytes themselves


def test_a_sleeping_link_grabs_again_after_the_poll_interval() -> None:
    """gearmand sends no NOOP when an epoch job comes due: a link asleep for poll_interval seconds GRABs again."""
    session, wires = ready(exceptions=False, poll_interval=5.0)
    link, wire = session.links[0], wires[0]
    wire.take()
    assert session.poll(100.0) is None  # nothing asleep
    session.receive(link, res(T.NO_JOB))
    assert wire.take() == [(T.PRE_SLEEP, ())]
    assert session.unstamped
    assert session.poll(100.0) == 5.0  # first seen asleep now
    assert session.poll(104.0) == 1.0
    assert wire.take() == []
    assert session.poll(105.0) is None
    assert wire.take() == [(T.GRAB_JOB_UNIQ, ())]
    session.receive(link, res(T.NO_JOB))
    assert wire.take() == [(T.PRE_SLEEP, ())]  # and back to sleep, timed afresh
    assert session.poll(106.0) == 5.0


def test_poll_interval_none_waits_for_noop_only() -> None:
    session, wires = ready(exceptions=False, poll_interval=None)
    session.receive(session.links[0], res(T.NO_JOB))
    wires[0].take()
    assert session.poll(0.0) is None
    assert session.poll(1e9) is None
    assert wires[0].take() == []


def test_burst_stops_accepting_once_every_server_answered_no_job() -> None:
    session, wires = make(2, concurrency=2, exceptions=False)
    session.register("f", noop_handler)
    session.start(burst=True)
    connect(session, wires)
    first, second = session.links
    job = assign(session, first, b"H:1")
    session.receive(first, res(T.NO_JOB))
    session.receive(second, res(T.NO_JOB))
    assert all((T.PRE_SLEEP, ()) not in wire.take() for wire in wires)  # a batch consumer never sleeps
    assert not session.accepting  # drained: the job in hand still runs
    assert not finished(session)
    session.job_returned(job, Outcome(b"done"))
    assert wires[0].take() == [(T.WORK_COMPLETE, (b"H:1", b"done"))]  # and no GRAB after it
    assert finished(session)
    assert session.last_job is job


def test_burst_counts_a_server_that_cannot_be_reached_as_empty() -> None:
    session, wires = make(2, exceptions=False)
    session.register("f", noop_handler)
    session.start(burst=True)
    plug(session, session.links[0], wires[0])
    session.receive(session.links[0], res(T.NO_JOB))
    assert session.accepting  # the other server was never tried
    session.connect_failed(session.links[1], now=0.0)
    assert finished(session)


def test_job_hooks_run_around_each_handler_and_a_raising_hook_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[object] = []

    def on_job_start(job: WorkerJob) -> None:
        calls.append(("start", job.handle))
        raise RuntimeError("hook bug")

    session, wires = ready(
        exceptions=False, on_job_start=on_job_start, on_job_end=lambda job, outcome: calls.append(outcome)
    )
    job = assign(session, session.links[0], b"H:1")
    wires[0].take()
    session.job_returned(job, Outcome(b"ok"))
    assert calls == [("start", b"H:1"), Outcome(b"ok")]
    assert wires[0].take()[0] == (T.WORK_COMPLETE, (b"H:1", b"ok"))  # the job went on despite the hook
    assert "on_job_start hook raised" in caplog.text


def test_coroutine_job_hooks_are_refused() -> None:
    async def on_job_start(job: WorkerJob) -> None:
        pass

    with pytest.raises(TypeError, match="plain functions"):
        make(on_job_start=on_job_start)
