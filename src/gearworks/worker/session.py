"""The worker's sans-I/O core, shared by ``AsyncWorker`` and ``Worker``: registrations, the grab/sleep/wake cycle on
every server, how many jobs may be grabbed now, and what to send for each handler outcome.

It never touches sockets, threads or clocks: drivers tell it when a connection is up or gone, feed it the packets
they decode, pass the time in as ``now``, and run the jobs it returns. Output follows the one contract of every core
(``protocol/outbox.py``): each ``ServerLink`` is an outbox, and after every call into the session the driver takes
``session.take_ready()`` and writes each link's ``take_out()``. Calls into the session must come from one thread.

How this works:

- One ``ServerLink`` per job server. On connect the session sends SET_CLIENT_ID (if set), OPTION_REQ
  ``exceptions`` (if wanted) and every CAN_DO / CAN_DO_TIMEOUT, so a reconnect restores everything.
- A *slot* is one job the worker can run at once (``concurrency``). A GRAB is only sent for a free slot, and a
  GRAB's slot stays reserved until its answer: JOB_ASSIGN* turns the reservation into a running job, NO_JOB frees
  it. So the worker never holds a job it cannot start.
- Free slots go to awake links in rotation, one GRAB at a time, so several servers are served fairly.
- NO_JOB marks the link exhausted: no more GRABs there. Once its last GRAB is answered it sends PRE_SLEEP and
  waits for NOOP (gearmand answers PRE_SLEEP with an immediate NOOP if work is already waiting, PROTOCOL.md §3.8).
  A link asleep for ``poll_interval`` seconds GRABs again (``poll``): gearmand sends no NOOP when an epoch job
  comes due. The link states and what moves them are in one table, ``_TRANSITIONS``.
- Burst mode (drain and exit) sends no PRE_SLEEP: once every server is exhausted (or down), the session stops
  accepting, and the driver's loop ends when the jobs in hand are done.
- A handler's outcome becomes WORK_COMPLETE (return value), or WORK_EXCEPTION (if the server accepted the
  ``exceptions`` option) followed by WORK_FAIL (a raise). gearmand 1.1.20 ends the job at WORK_EXCEPTION and
  answers the WORK_FAIL with a harmless ERROR JOB_NOT_FOUND (§3.7); servers that follow the original spec (Perl
  Gearman::Server) need the WORK_FAIL to end it.
- When a link's connection is lost its GRAB reservations are freed, and its running jobs become *lost*: their
  handlers finish, but nothing they send goes out (the server has requeued them, §3.10).
- A server answers requests in order (§1.1), so each link keeps what it is owed: a reply to every GRAB and to
  OPTION_REQ, maybe an ERROR to a WORK_* packet. An ERROR is matched to the oldest of those; one that answers a
  GRAB_JOB_UNIQ/ALL (the Perl Gearman::Server has neither) switches that server to plain GRAB_JOB.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, NamedTuple, TypeVar, Unpack, overload

from gearworks.codecs import Codec, codec_or_default
from gearworks.connection import ConnectionKeywords, ServerAddress, connect_options, parse_servers
from gearworks.connection.backoff import Backoff
from gearworks.protocol import Packet, PacketType, encode, encode_parts
from gearworks.protocol.fields import name_bytes
from gearworks.protocol.outbox import Outbox
from gearworks.worker.job import WorkerJob, to_payload

__all__ = [
    "GrabMode",
    "Handler",
    "LinkEvent",
    "LinkState",
    "Outcome",
    "Owed",
    "Registration",
    "Relay",
    "ServerLink",
    "WorkerBase",
    "WorkerOptions",
    "WorkerSession",
    "call_handler",
    "call_hook",
]

log = logging.getLogger("gearworks.worker")

Handler = Callable[[WorkerJob], Any]
"""A job handler: takes the job, returns the result (bytes, str or None, or anything the worker's codec encodes)."""
HandlerT = TypeVar("HandlerT", bound=Handler)
GrabMode = Literal["job", "uniq", "all"]
"""GRAB_JOB (no unique key), GRAB_JOB_UNIQ (the default) or GRAB_JOB_ALL (unique key and reducer)."""
_T = PacketType
_GRAB_TYPES = {"job": _T.GRAB_JOB, "uniq": _T.GRAB_JOB_UNIQ, "all": _T.GRAB_JOB_ALL}
_GRAB_JOB = encode(_T.GRAB_JOB)
_PRE_SLEEP = encode(_T.PRE_SLEEP)
_EXCEPTIONS_OPTION = encode(_T.OPTION_REQ, (b"exceptions",))


class Owed(Enum):
    """What a server owes a link for a request it got (``ServerLink.replies``)."""

    MAYBE = "maybe"
    """WORK_* or ALL_YOURS: nothing, or an ERROR."""
    OPTION = "option"
    """OPTION_REQ: OPTION_RES or ERROR."""
    GRAB = "grab"
    """GRAB_JOB*: JOB_ASSIGN*, NO_JOB or ERROR."""


class LinkState(Enum):
    """Where one server's connection is in the grab/sleep/wake cycle."""

    DISCONNECTED = "disconnected"
    """No connection: nothing is queued for it."""
    AWAKE = "awake"
    """GRABs may be sent."""
    EXHAUSTED = "exhausted"
    """NO_JOB came (or GRAB_JOB was refused): no more GRABs; those still out are answered first."""
    ASLEEP = "asleep"
    """PRE_SLEEP sent: waiting for NOOP."""


class LinkEvent(Enum):
    """What moves a link from one state to another."""

    CONNECT = "connect"
    LOSE = "lose"
    NOOP = "noop"
    NO_JOB = "no job"
    """NO_JOB, or an ERROR refusing plain GRAB_JOB."""
    SLEEP = "sleep"
    """An exhausted link's last GRAB was answered while the worker accepts jobs: PRE_SLEEP goes out."""
    POLL = "poll"
    """A link slept ``poll_interval`` seconds without a NOOP: GRAB again (gearmand sends no NOOP when an epoch job
    comes due; libgearman workers poll the same way)."""


# Enum members are looked up through a descriptor on Python 3.11 (~75 ns each): the per-job paths use these aliases.
_MAYBE, _OPTION, _GRAB = Owed.MAYBE, Owed.OPTION, Owed.GRAB
_DISCONNECTED, _AWAKE, _EXHAUSTED, _ASLEEP = (
    LinkState.DISCONNECTED,
    LinkState.AWAKE,
    LinkState.EXHAUSTED,
    LinkState.ASLEEP,
)

_S, _E = LinkState, LinkEvent
# The link state machine, whole. A (state, event) pair missing here leaves the state as it is (a NOOP to an awake
# link, a late NO_JOB to one already asleep).
#
#   state         CONNECT  NOOP   NO_JOB     SLEEP   POLL   LOSE
#   DISCONNECTED  AWAKE    .      .          .       .      .
#   AWAKE         .        .      EXHAUSTED  .       .      DISCONNECTED
#   EXHAUSTED     .        AWAKE  .          ASLEEP  .      DISCONNECTED
#   ASLEEP        .        AWAKE  .          .       AWAKE  DISCONNECTED
_TRANSITIONS: dict[LinkState, dict[LinkEvent, LinkState]] = {
    _S.DISCONNECTED: {_E.CONNECT: _S.AWAKE},
    _S.AWAKE: {_E.NO_JOB: _S.EXHAUSTED, _E.LOSE: _S.DISCONNECTED},
    _S.EXHAUSTED: {_E.NOOP: _S.AWAKE, _E.SLEEP: _S.ASLEEP, _E.LOSE: _S.DISCONNECTED},
    _S.ASLEEP: {_E.NOOP: _S.AWAKE, _E.POLL: _S.AWAKE, _E.LOSE: _S.DISCONNECTED},
}


def next_state(state: LinkState, event: LinkEvent) -> LinkState:
    """The state ``event`` moves a link in ``state`` to (``_TRANSITIONS``)."""
    return _TRANSITIONS[state].get(event, state)


def _drained(link: ServerLink) -> bool:
    """Whether burst mode counts ``link`` as empty (``WorkerSession._check_drained``)."""
    if link.state is _EXHAUSTED:
        return link.outstanding == 0
    return link.state is _DISCONNECTED and link.backoff.failures > 0


def _grab_type(packet: bytes) -> int:
    return int.from_bytes(packet[4:8], "big")


@dataclass(frozen=True, slots=True)
class Registration:
    """A function this worker serves: its name on the wire (prefix included), handler, and optional time limit."""

    name: bytes
    handler: Handler
    timeout: float | None = None
    coroutine: bool = False

    def packet(self) -> bytes:
        """CAN_DO, or CAN_DO_TIMEOUT with the limit in whole seconds as the clients document it (gearmand 1.1.20
        reads milliseconds with a 1 s floor, PROTOCOL.md §3.9)."""
        if self.timeout is None:
            return encode(_T.CAN_DO, (self.name,))
        return encode(_T.CAN_DO_TIMEOUT, (self.name, b"%d" % max(1, math.ceil(self.timeout))))


class ServerLink(Outbox[bytes]):
    """What the worker knows about one job server's connection, and the bytes queued for it."""

    __slots__ = (
        "address",
        "backoff",
        "exceptions",
        "generation",
        "grab",
        "outstanding",
        "replies",
        "slept_at",
        "state",
    )

    def __init__(self, address: ServerAddress, backoff: Backoff, ready: list[ServerLink]) -> None:
        super().__init__(ready)
        self.address = address
        self.backoff = backoff
        self.state = _DISCONNECTED
        self.generation = 0
        """Bumped on every connect and disconnect: jobs from an older generation are lost."""
        self.outstanding = 0
        """GRABs sent and not answered yet."""
        self.exceptions = False
        """The server accepted OPTION_REQ exceptions."""
        self.grab = b""
        """The GRAB packet this server gets (plain GRAB_JOB once it refused GRAB_JOB_UNIQ/ALL)."""
        self.replies: deque[Owed] = deque()
        """What the server owes, in the order the requests went out (it answers in order, PROTOCOL.md §1.1)."""
        self.slept_at: float | None = None
        """When the link was first seen asleep by ``WorkerSession.poll`` (None: awake, or not seen yet)."""

    def __repr__(self) -> str:
        return f"ServerLink({self.address}, {self.state.value}, outstanding={self.outstanding})"

    @property
    def connected(self) -> bool:
        return self.state is not _DISCONNECTED


class Outcome(NamedTuple):
    """How a handler ended: its return value, or the exception it raised."""

    value: object = None
    error: BaseException | None = None


def call_handler(handler: Handler, job: WorkerJob) -> Outcome:
    """Run a plain-function handler, catching whatever it raises (a handler never kills the worker)."""
    try:
        return Outcome(handler(job))
    except Exception as exc:
        return Outcome(error=exc)


JobStartHook = Callable[[WorkerJob], object]
"""``on_job_start(job)``: a plain function, run before the handler."""
JobEndHook = Callable[[WorkerJob, Outcome], object]
"""``on_job_end(job, outcome)``: a plain function, run once the handler's outcome (value or error) is known."""
WorkerHook = Callable[[Any], object]
"""``on_startup(worker)`` / ``on_shutdown(worker)``: a plain function, or (``AsyncWorker``) a coroutine function."""


def call_hook(name: str, hook: Callable[..., object] | None, *args: object) -> object:
    """Run a hook, returning what it returned; an exception is logged and swallowed (a hook never kills the
    worker)."""
    if hook is None:
        return None
    try:
        return hook(*args)
    except Exception:
        log.exception("%s hook raised; ignored", name)
        return None


class Relay:
    """The ``JobOutput`` of jobs whose handlers run outside the driver's calls into the session (asyncio tasks, pool
    threads): their packets go to ``deliver``, which must get them into the session on the driver's thread and
    written; payloads and exception packets only read the session's settings, from any thread."""

    __slots__ = ("deliver", "session")

    def __init__(self, session: WorkerSession, deliver: Callable[[WorkerJob, list[bytes], int], None]) -> None:
        self.session = session
        self.deliver = deliver

    def job_output(self, job: WorkerJob, chunks: list[bytes], packets: int = 1) -> None:
        self.deliver(job, chunks, packets)

    def payload(self, job: WorkerJob, value: object) -> bytes:
        return self.session.payload(job, value)

    def exception_packets(self, job: WorkerJob, data: bytes) -> list[bytes]:
        return self.session.exception_packets(job, data)


class WorkerSession:
    """The worker's state across all its servers (see the module docstring)."""

    def __init__(
        self,
        servers: Iterable[ServerAddress],
        *,
        concurrency: int = 1,
        grab: GrabMode = "uniq",
        client_id: bytes | None = None,
        prefix: bytes | None = None,
        exceptions: bool = True,
        codec: Codec | None = None,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 10.0,
        poll_interval: float | None = 5.0,
        on_job_start: JobStartHook | None = None,
        on_job_end: JobEndHook | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if poll_interval is not None and not poll_interval > 0:
            raise ValueError("poll_interval must be a positive number of seconds, or None")
        if grab not in _GRAB_TYPES:
            raise ValueError(f"grab must be one of {sorted(_GRAB_TYPES)}")
        self.ready: list[ServerLink] = []
        """Links with bytes to write (``take_ready``)."""
        self.links = [
            ServerLink(address, Backoff(reconnect_delay, max_reconnect_delay), self.ready) for address in servers
        ]
        if not self.links:
            raise ValueError("a worker needs at least one job server")
        self.concurrency = concurrency
        self.grab_packet = encode(_GRAB_TYPES[grab])
        self.client_id = client_id
        self.prefix = prefix
        self.exceptions = exceptions
        self.codec = codec_or_default(codec)
        self.registrations: dict[bytes, Registration] = {}
        self.running = 0
        """Jobs whose handler has not returned yet."""
        self.reserved = 0
        """GRABs sent and not answered, over all links."""
        self.started = 0
        self.handled = 0
        self.limit: int | None = None
        self.accepting = False
        self.burst = False
        """Drain and exit: stop accepting once every server has answered NO_JOB (``start(burst=True)``)."""
        self.last_job: WorkerJob | None = None
        """The job started last (what ``grab_one`` returns)."""
        self.poll_interval = poll_interval
        """Seconds a link sleeps before it GRABs again without a NOOP (None: only a NOOP wakes it)."""
        self.unstamped = False
        """A link fell asleep since the last ``poll``: a driver without a loop turn calls ``poll`` soon."""
        for hook in (on_job_start, on_job_end):
            if hook is not None and is_coroutine_handler(hook):
                raise TypeError("on_job_start and on_job_end are plain functions (they run inside the session)")
        self.on_job_start = on_job_start
        self.on_job_end = on_job_end
        self._next = 0
        self._dispatch: dict[PacketType, Callable[[ServerLink, tuple[bytes, ...]], WorkerJob | None]] = {
            _T.NOOP: self._on_noop,
            _T.NO_JOB: self._on_no_job,
            _T.JOB_ASSIGN: self._on_assign,
            _T.JOB_ASSIGN_UNIQ: self._on_assign_uniq,
            _T.JOB_ASSIGN_ALL: self._on_assign_all,
            _T.ERROR: self._on_error,
            _T.OPTION_RES: self._on_option_res,
        }

    # Registrations and connection-level settings: kept, and sent to every connected server.

    def wire_name(self, name: str | bytes) -> bytes:
        """The function name as sent: ``prefix + TAB + name`` when the worker has a prefix (as the clients do).

        Raises:
            ValueError: empty, or containing a NUL byte.
        """
        raw = name.encode() if isinstance(name, str) else bytes(name)
        if not raw or b"\0" in raw:
            raise ValueError(f"function name {raw!r} must be non-empty and contain no NUL byte")
        return self.prefix + b"\t" + raw if self.prefix else raw

    def register(self, name: str | bytes, handler: Handler, timeout: float | None = None) -> Registration:
        """Serve ``name`` with ``handler`` (replacing an earlier registration); ``timeout`` in seconds sends
        CAN_DO_TIMEOUT."""
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        registration = Registration(self.wire_name(name), handler, timeout, is_coroutine_handler(handler))
        previous = self.registrations.get(registration.name)
        self.registrations[registration.name] = registration
        if previous is None:
            self._broadcast([registration.packet()])
        elif previous.timeout != timeout:
            # A second CAN_DO would register the name twice on gearmand (PROTOCOL.md §3.8): replace it.
            self._broadcast([encode(_T.CANT_DO, (registration.name,)), registration.packet()])
        self._grant()
        return registration

    def unregister(self, name: str | bytes) -> bool:
        """Stop serving ``name`` (CANT_DO); False if it was not registered."""
        wire = self.wire_name(name)
        if self.registrations.pop(wire, None) is None:
            return False
        self._broadcast([encode(_T.CANT_DO, (wire,))])
        return True

    def reset_abilities(self) -> None:
        """Forget every registration (RESET_ABILITIES)."""
        self.registrations.clear()
        self._broadcast([encode(_T.RESET_ABILITIES)])

    def set_client_id(self, client_id: bytes) -> None:
        """The id admin ``workers`` shows (SET_CLIENT_ID), sent now and on every connect."""
        self.client_id = client_id
        self._broadcast([encode(_T.SET_CLIENT_ID, (client_id,))])

    def all_yours(self) -> None:
        """Send ALL_YOURS (gearmand 1.1.20 answers ERROR INVALID_COMMAND, which is logged and ignored)."""
        self._broadcast([encode(_T.ALL_YOURS)], (_MAYBE,))

    def _broadcast(self, chunks: list[bytes], owed: tuple[Owed, ...] = ()) -> None:
        for link in self.links:
            self._send(link, chunks, owed)

    @staticmethod
    def _send(link: ServerLink, chunks: list[bytes], owed: Iterable[Owed] = ()) -> None:
        if link.state is not _DISCONNECTED:
            link.replies.extend(owed)
            link.push_all(chunks)

    def take_ready(self) -> list[ServerLink]:
        """Links with bytes to write, in the order they got them; the driver writes each one's ``take_out()``."""
        ready = self.ready
        taken = [link for link in ready if link.out]  # a link emptied by its loss may still be listed
        ready.clear()
        return taken

    @staticmethod
    def _move(link: ServerLink, event: LinkEvent) -> None:
        link.state = next_state(link.state, event)

    # Running and stopping.

    def start(self, max_jobs: int | None = None, *, burst: bool = False) -> None:
        """Begin a work loop: grab jobs, at most ``max_jobs`` in all (None: no limit); with ``burst``, stop accepting
        once no server has a job left (``_check_drained``)."""
        if max_jobs is not None and max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        self.limit = max_jobs
        self.burst = burst
        self.started = 0
        self.handled = 0
        self.running = 0  # handlers abandoned by an earlier loop no longer count
        self.reserved = 0
        self.last_job = None
        self.accepting = True
        self._grant()
        self._check_drained()

    def _check_drained(self) -> None:
        """In burst mode, stop accepting (the loop ends once the jobs in hand are done) when every server is
        drained: it answered NO_JOB to its last GRAB, or it is down and its latest attempt failed (a server that
        cannot be reached counts as empty, or a batch consumer would wait for it forever)."""
        if not (self.burst and self.accepting):
            return
        if self.registrations and not all(_drained(link) for link in self.links):
            return
        log.info("burst: no job left on any server; finishing %d job(s) in hand", self.running)
        self.accepting = False

    def poll(self, now: float) -> float | None:
        """Wake every link asleep for ``poll_interval`` seconds (it GRABs again); returns the seconds until the next
        link is due (None: none asleep, or polling is off). Drivers call it every loop turn or on a timer; a link
        is timed from the first call that sees it asleep."""
        interval = self.poll_interval
        if interval is None:
            return None
        self.unstamped = False
        due: float | None = None
        woke = False
        for link in self.links:
            if link.state is not _ASLEEP:
                continue
            if link.slept_at is None:
                link.slept_at = now
            left = link.slept_at + interval - now
            if left <= 0:
                self._move(link, LinkEvent.POLL)
                woke = True
            else:
                due = left if due is None else min(due, left)
        if woke:
            self._grant()
        return due

    def stop(self) -> None:
        """Grab nothing more; jobs already held or granted still run (drain). A single flag store, so drivers may
        call it from a signal handler or another thread."""
        self.accepting = False

    @property
    def finished(self) -> bool:
        """Stopped, every handler returned and every GRAB answered (or its connection gone)."""
        return not self.accepting and self.running == 0 and self.reserved == 0

    def wants_connection(self, link: ServerLink) -> bool:
        """Whether the driver should (re)connect ``link`` now that it is down."""
        return self.accepting and link.state is _DISCONNECTED

    def connected(self, link: ServerLink) -> None:
        """A connection to ``link``'s server is up: queue the handshake and start grabbing."""
        self._move(link, LinkEvent.CONNECT)
        link.generation += 1
        link.outstanding = 0
        link.exceptions = False
        link.grab = self.grab_packet
        link.replies.clear()
        link.backoff.succeeded()
        chunks = []
        if self.client_id is not None:
            chunks.append(encode(_T.SET_CLIENT_ID, (self.client_id,)))
        if self.exceptions:
            chunks.append(_EXCEPTIONS_OPTION)
        chunks.extend(registration.packet() for registration in self.registrations.values())
        self._send(link, chunks, (_OPTION,) if self.exceptions else ())
        self._grant()

    def connect_failed(self, link: ServerLink, now: float) -> None:
        """A connection attempt failed at ``now``: back off."""
        link.backoff.failed(now)
        log.warning("cannot connect to %s; retrying in %.1fs", link.address, link.backoff.delay(now))
        self._check_drained()

    def failed(self, link: ServerLink, now: float) -> None:
        """Something unexpected broke ``link`` at ``now``, connected or not: it is down, and backs off once."""
        if link.state is _DISCONNECTED:
            self.connect_failed(link, now)
        else:
            self.disconnected(link, now)

    def disconnected(self, link: ServerLink, now: float) -> None:
        """``link``'s connection is gone: free its GRAB reservations, lose its running jobs, back off."""
        if link.state is _DISCONNECTED:
            return
        self._move(link, LinkEvent.LOSE)
        link.discard()
        link.generation += 1
        self.reserved -= link.outstanding
        link.outstanding = 0
        link.replies.clear()
        if self.accepting:
            link.backoff.failed(now)
            log.warning("lost connection to %s; reconnecting in %.1fs", link.address, link.backoff.delay(now))
        self._grant()
        self._check_drained()

    # Packets from a server.

    def receive(self, link: ServerLink, packet: Packet) -> WorkerJob | None:
        """Handle one packet from ``link``'s server; returns a job for the driver to start, if one was assigned."""
        handler = self._dispatch.get(packet.type)
        if handler is None:
            log.warning("%s sent an unexpected %s packet; ignored", link.address, packet.type.name)
            return None
        return handler(link, packet.args)

    def _on_noop(self, link: ServerLink, args: tuple[bytes, ...]) -> None:
        self._move(link, LinkEvent.NOOP)
        self._grant()

    def _on_no_job(self, link: ServerLink, args: tuple[bytes, ...]) -> None:
        self._move(link, LinkEvent.NO_JOB)
        self._answered(link)
        self._grant()

    def _on_assign(self, link: ServerLink, args: tuple[bytes, ...]) -> WorkerJob | None:
        return self._assigned(link, args[0], args[1], args[2])

    def _on_assign_uniq(self, link: ServerLink, args: tuple[bytes, ...]) -> WorkerJob | None:
        return self._assigned(link, args[0], args[1], args[3], unique=args[2])

    def _on_assign_all(self, link: ServerLink, args: tuple[bytes, ...]) -> WorkerJob | None:
        return self._assigned(link, args[0], args[1], args[4], unique=args[2], reducer=args[3])

    def _on_error(self, link: ServerLink, args: tuple[bytes, ...]) -> None:
        code, text = args
        replies = link.replies
        owed = replies[0] if replies else None
        if owed is _MAYBE:
            # A WORK_* packet (JOB_NOT_FOUND after WORK_EXCEPTION + WORK_FAIL on gearmand, or a requeued job) or
            # ALL_YOURS (INVALID_COMMAND on gearmand).
            replies.popleft()
            log.debug("%s: ERROR %s %s", link.address, code, text)
        elif owed is _OPTION:
            replies.popleft()
            log.info("%s does not forward exceptions (%s); failed jobs get WORK_FAIL only", link.address, code)
        elif owed is _GRAB:
            self._grab_refused(link, code, text)
        else:
            log.warning("%s sent ERROR %s: %s", link.address, code.decode(errors="replace"), text)

    def _grab_refused(self, link: ServerLink, code: bytes, text: bytes) -> None:
        # The Perl Gearman::Server has no GRAB_JOB_UNIQ/ALL and answers them with ERROR server_error: use GRAB_JOB
        # there. If even that is refused, wait for a NOOP rather than spin.
        if link.grab != _GRAB_JOB:
            log.warning("%s refused %s (%s); using GRAB_JOB there", link.address, _T(_grab_type(link.grab)).name, code)
            link.grab = _GRAB_JOB
        else:
            log.warning("%s refused GRAB_JOB: %s %s", link.address, code, text)
            self._move(link, LinkEvent.NO_JOB)
        self._answered(link)
        self._grant()

    def _on_option_res(self, link: ServerLink, args: tuple[bytes, ...]) -> None:
        if self._owed(link, _OPTION):
            link.exceptions = args[0].lower().startswith(b"exceptions")

    @staticmethod
    def _owed(link: ServerLink, kind: Owed) -> bool:
        """Settle a reply of ``kind``. Replies are in request order, so whatever was owed before it will not come
        any more (an ERROR-only WORK_*, or an OPTION_REQ a server ignored)."""
        replies = link.replies
        if kind not in replies:
            log.warning("%s sent a reply nothing asked for", link.address)
            return False
        while (owed := replies.popleft()) != kind:
            if owed is not _MAYBE:
                log.debug("%s never answered an earlier request", link.address)
        return True

    def _answered(self, link: ServerLink) -> None:
        """A GRAB was answered. Once an exhausted link's last GRAB is answered, whatever the answer, it sleeps: the
        last answers may be jobs that arrived after an earlier NO_JOB, and without PRE_SLEEP no NOOP would come."""
        if self._owed(link, _GRAB):
            link.outstanding -= 1
            self.reserved -= 1
        if link.state is _EXHAUSTED and link.outstanding == 0 and self.accepting:
            if self.burst:
                self._check_drained()
                return
            self._move(link, LinkEvent.SLEEP)
            link.slept_at = None
            self.unstamped = True
            self._send(link, [_PRE_SLEEP])

    def _assigned(
        self,
        link: ServerLink,
        handle: bytes,
        function: bytes,
        workload: bytes,
        *,
        unique: bytes = b"",
        reducer: bytes | None = None,
    ) -> WorkerJob | None:
        self._answered(link)
        job = WorkerJob(
            handle,
            function,
            workload,
            unique,
            reducer,
            output=self,
            link=link,
            generation=link.generation,
            codec=self.codec,
        )
        self.running += 1
        self.started += 1
        self.last_job = job
        if self.limit is not None and self.started >= self.limit:
            self.accepting = False
        if function not in self.registrations:
            log.warning("%s assigned %r for unregistered function %r; failing it", link.address, job, function)
            self.job_returned(job, Outcome(error=LookupError(f"no handler for {function!r}")))
            return None
        call_hook("on_job_start", self.on_job_start, job)
        return job

    def registration_for(self, job: WorkerJob) -> Registration:
        """The registration (handler, whether it is a coroutine function) of the job's function."""
        return self.registrations[job.function]

    # Handler outcomes and job output (the JobOutput protocol of WorkerJob).

    def job_cancelled(self, job: WorkerJob) -> None:
        """A handler was cancelled (immediate stop): free its slot, send nothing (the server requeues the job)."""
        self.running -= 1

    def job_returned(self, job: WorkerJob, outcome: Outcome) -> None:
        """A handler finished: end the job from its outcome unless it ended itself, free its slot, grab again."""
        self.running -= 1
        self.handled += 1
        call_hook("on_job_end", self.on_job_end, job, outcome)
        chunks: list[bytes] = []
        owed: list[Owed] = []
        if not job.done:
            job.end()
            if outcome.error is None:
                try:
                    chunks = encode_parts(_T.WORK_COMPLETE, (job.handle, self.payload(job, outcome.value)))
                    owed = [_MAYBE]
                except Exception as exc:
                    outcome = Outcome(error=exc)
            if outcome.error is not None:
                log.error("handler for %r raised", job.function, exc_info=outcome.error)
                error = outcome.error
                chunks = self.exception_packets(job, f"{type(error).__name__}: {error}".encode(errors="replace"))
                owed = [_MAYBE] * len(chunks)
        elif outcome.error is not None:
            log.error("handler for %r raised after ending its job", job.function, exc_info=outcome.error)
        link = job.link
        assert isinstance(link, ServerLink)
        if job.generation != link.generation:
            log.warning("job %r from %s was lost with its connection; result dropped", job.handle, link.address)
            chunks = []
            owed = []
        grants = self._grants()
        for other, count in grants.items():
            if other is not link:
                self._send(other, [other.grab] * count, (_GRAB,) * count)
        count = grants.get(link, 0)
        chunks.extend([link.grab] * count)
        owed.extend([_GRAB] * count)
        if chunks:
            self._send(link, chunks, owed)

    def job_output(self, job: WorkerJob, chunks: list[bytes], packets: int = 1) -> None:
        """Send a job's packets (``packets`` of them in ``chunks``), unless its connection is gone (then the server
        has requeued it: drop them)."""
        link = job.link
        assert isinstance(link, ServerLink)
        if job.generation == link.generation:
            self._send(link, chunks, (_MAYBE,) * packets)
        else:
            log.debug("job %r is lost: output dropped", job.handle)

    def payload(self, job: WorkerJob, value: object) -> bytes:
        """A result value as bytes (``to_payload`` with this worker's codec)."""
        return to_payload(value, self.codec, job.function)

    def exception_packets(self, job: WorkerJob, data: bytes) -> list[bytes]:
        """WORK_EXCEPTION (if the job's server accepted the ``exceptions`` option), then WORK_FAIL."""
        link = job.link
        fail = encode(_T.WORK_FAIL, (job.handle,))
        if isinstance(link, ServerLink) and link.exceptions:
            return [encode(_T.WORK_EXCEPTION, (job.handle, data)), fail]
        return [fail]

    # Grabbing.

    def free_slots(self) -> int:
        """How many more GRABs may be sent now."""
        if not self.accepting or not self.registrations:
            return 0
        free = self.concurrency - self.running - self.reserved
        if self.limit is not None:
            free = min(free, self.limit - self.started - self.reserved)
        return free

    def _grants(self) -> dict[ServerLink, int]:
        """Hand free slots to awake links in rotation, reserving them; returns GRABs to send per link."""
        free = self.free_slots()
        grants: dict[ServerLink, int] = {}
        links = self.links
        count = len(links)
        while free > 0:
            granted = False
            for _ in range(count):
                link = links[self._next]
                self._next = (self._next + 1) % count
                if link.state is _AWAKE:
                    grants[link] = grants.get(link, 0) + 1
                    link.outstanding += 1
                    self.reserved += 1
                    free -= 1
                    granted = True
                    if free == 0:
                        break
            if not granted:
                break
        return grants

    def _grant(self) -> None:
        for link, count in self._grants().items():
            self._send(link, [link.grab] * count, (_GRAB,) * count)


class WorkerOptions(ConnectionKeywords, total=False):
    """Keyword options of both workers' constructors: the connection keywords (``ConnectionKeywords``: timeouts,
    TLS, keepalive, packet limit), and (defaults in brackets):

    concurrency: jobs run at once, over all servers [1].
    grab: ``"uniq"`` (GRAB_JOB_UNIQ), ``"all"`` (GRAB_JOB_ALL) or ``"job"`` (GRAB_JOB) ["uniq"].
    client_id: shown by admin ``workers`` (SET_CLIENT_ID) [None].
    prefix: prepended to every function name with a TAB, as the clients' ``prefix`` does [None].
    exceptions: ask each server to forward exceptions (OPTION_REQ); a raise then sends WORK_EXCEPTION first [True].
    codec: decodes workloads (``job.value``) and encodes results (``gearworks.codecs``: ``JSONCodec()``, or any
        object with ``encode``/``decode``) [None: ``BytesCodec``, results bytes or str (UTF-8), None sent empty].
    drain_timeout: seconds ``stop(drain=True)`` and SIGTERM/SIGINT wait for jobs in hand [30.0].
    reconnect_delay, max_reconnect_delay: backoff after a server fails or is lost: doubling from
        ``reconnect_delay`` to ``max_reconnect_delay`` seconds, with jitter (50 to 100 %), and retried at the cap for
        as long as the server is down (a worker is never given up on a server) [0.1, 10.0].
    poll_interval: seconds a connection sleeps (PRE_SLEEP) before it GRABs again without a NOOP, so epoch jobs
        run on C gearmand, which wakes no sleeping worker when one comes due (libgearman workers poll the same
        way); None: wait for NOOP only [5.0].

    Hooks (arq's names) [None]; an exception in one is logged and the worker goes on, except in ``on_startup``:
    on_startup(worker): in ``work()`` before it connects, on its thread (the event loop for ``AsyncWorker``, which
        also takes a coroutine function); raising makes ``work()`` raise.
    on_shutdown(worker): in ``work()`` after the connections are closed, just before it returns (same thread).
    on_job_start(job): a plain function, run when a job is assigned, before its handler starts, on the thread that
        runs ``work()`` (the event loop for ``AsyncWorker``; not a pool thread).
    on_job_end(job, outcome): a plain function, run when the handler's ``Outcome`` (``value`` or ``error``) is
        known, before the result is sent, on that same thread; not for jobs abandoned by an immediate stop.

    No ``command_timeout``: a server answers a worker's GRABs at once, and a sleeping worker waits for NOOP as long
    as it takes; keepalive finds a dead server.
    """

    concurrency: int
    grab: GrabMode
    client_id: str | bytes | None
    prefix: str | bytes | None
    exceptions: bool
    codec: Codec | None
    drain_timeout: float
    reconnect_delay: float
    max_reconnect_delay: float
    poll_interval: float | None
    on_startup: WorkerHook | None
    on_shutdown: WorkerHook | None
    on_job_start: JobStartHook | None
    on_job_end: JobEndHook | None


class WorkerBase:
    """The registration API both workers share; drivers add connecting and running. Call it before ``work()`` or
    from the thread running it.

    Args:
        servers: ``"host:port,host:port"``, a list, or None for ``$GEARMAN_SERVERS`` (else 127.0.0.1:4730).
        options: see ``WorkerOptions`` (concurrency, grab mode, client id, prefix, exceptions, codec, drain and
            reconnect timing, and the connection keywords).
    """

    def __init__(
        self,
        servers: str | ServerAddress | Iterable[str | ServerAddress] | None = None,
        **options: Unpack[WorkerOptions],
    ) -> None:
        self.connect_options = connect_options(options, WorkerOptions, type(self).__name__)
        self.session = WorkerSession(
            parse_servers(servers),
            concurrency=options.get("concurrency", 1),
            grab=options.get("grab", "uniq"),
            client_id=name_bytes(options.get("client_id")),
            prefix=name_bytes(options.get("prefix")),
            exceptions=options.get("exceptions", True),
            codec=options.get("codec"),
            reconnect_delay=options.get("reconnect_delay", 0.1),
            max_reconnect_delay=options.get("max_reconnect_delay", 10.0),
            poll_interval=options.get("poll_interval", 5.0),
            on_job_start=options.get("on_job_start"),
            on_job_end=options.get("on_job_end"),
        )
        self.drain_timeout = options.get("drain_timeout", 30.0)
        self.on_startup = options.get("on_startup")
        self.on_shutdown = options.get("on_shutdown")

    def _check_handler(self, handler: Handler) -> None:
        """Refuse handlers this front-end cannot run (overridden by drivers)."""

    def _queued(self) -> None:
        """The session queued bytes outside the driver's loop (a registration while working): have them written."""
        raise NotImplementedError

    @overload
    def register(
        self, name: str | bytes, handler: None = None, timeout: float | None = None
    ) -> Callable[[HandlerT], HandlerT]: ...

    @overload
    def register(self, name: str | bytes, handler: HandlerT, timeout: float | None = None) -> HandlerT: ...

    def register(
        self, name: str | bytes, handler: HandlerT | None = None, timeout: float | None = None
    ) -> HandlerT | Callable[[HandlerT], HandlerT]:
        """Serve function ``name`` with ``handler(job)``; without a handler, a decorator.

        ``timeout`` (seconds, rounded up) is sent as CAN_DO_TIMEOUT. gearworks' server fails a job that runs past it;
        gearmand 1.1.20 reads the number as milliseconds (1 s minimum), requeues the job silently, and cancels the
        timer when the connection sends PRE_SLEEP, which an idle slot of a ``concurrency > 1`` worker does
        (PROTOCOL.md §3.9).

        Raises:
            ValueError: an empty name or one with a NUL byte; a timeout that is not positive.
            TypeError: a handler this worker cannot run.
        """
        if handler is None:

            def decorate(function: HandlerT) -> HandlerT:
                return self.register(name, function, timeout)

            return decorate
        self._check_handler(handler)
        self.session.register(name, handler, timeout)
        self._queued()
        return handler

    def unregister(self, name: str | bytes) -> bool:
        """Stop serving ``name`` (CANT_DO); False if it was not registered."""
        removed = self.session.unregister(name)
        self._queued()
        return removed

    def reset_abilities(self) -> None:
        """Stop serving every function (RESET_ABILITIES)."""
        self.session.reset_abilities()
        self._queued()

    def set_client_id(self, client_id: str | bytes) -> None:
        """Set the id admin ``workers`` shows (SET_CLIENT_ID), now and after every reconnect."""
        self.session.set_client_id(name_bytes(client_id) or b"")
        self._queued()

    def all_yours(self) -> None:
        """Send ALL_YOURS to every connected server (never implemented by gearmand 1.1.20)."""
        self.session.all_yours()
        self._queued()

    @property
    def functions(self) -> list[bytes]:
        """Registered function names as sent (prefix included)."""
        return list(self.session.registrations)


def is_coroutine_handler(handler: Callable[..., object]) -> bool:
    """Whether calling ``handler`` gives a coroutine to await."""
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
