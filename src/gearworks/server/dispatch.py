"""The job server's packet table: each request type → the handler that reads its arguments, calls the board and
queues the reply, with gearmand 1.1.20's exact error texts (PROTOCOL.md §1.4, §3).

How this works: ``packet_table(board)`` builds one dict keyed by ``PacketType`` whose values take ``(peer, args)``;
the driver looks up every decoded packet's type in it. Handlers only translate: what happens to jobs, functions
and workers is decided by ``board``, output goes into the peer's outbox (``peers``). Every type is in the table:
response-only and never-implemented types answer INVALID_COMMAND, as in gearmand.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from gearworks.protocol.fields import c_atoi, seconds
from gearworks.protocol.packets import PacketType
from gearworks.server.board import Board, Refused
from gearworks.server.jobs import Job, JobState, Priority
from gearworks.server.peers import Peer
from gearworks.server.stats import BUCKETS

__all__ = [
    "MAX_CLIENT_ID",
    "MAX_EPOCH",
    "MAX_HANDLE",
    "MAX_OPTION",
    "Handler",
    "packet_table",
    "status_body",
    "status_unique_body",
]

Handler = Callable[[Peer, tuple[bytes, ...]], None]
"""Reacts to one request packet's arguments from one peer."""

_T = PacketType
# Reply types as plain ints: IntEnum attribute lookups and packing cost measurably per packet.
_ECHO_RES = int(PacketType.ECHO_RES)
_ERROR = int(PacketType.ERROR)
_JOB_ASSIGN = int(PacketType.JOB_ASSIGN)
_JOB_ASSIGN_ALL = int(PacketType.JOB_ASSIGN_ALL)
_JOB_ASSIGN_UNIQ = int(PacketType.JOB_ASSIGN_UNIQ)
_NO_JOB = int(PacketType.NO_JOB)
_OPTION_RES = int(PacketType.OPTION_RES)
_STATUS_RES = int(PacketType.STATUS_RES)
_STATUS_RES_UNIQUE = int(PacketType.STATUS_RES_UNIQUE)
_WORK_COMPLETE = int(PacketType.WORK_COMPLETE)
_WORK_EXCEPTION = int(PacketType.WORK_EXCEPTION)
_WORK_FAIL = int(PacketType.WORK_FAIL)
_WORK_STATUS = int(PacketType.WORK_STATUS)
_HIGH, _NORMAL, _LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW
_RUNNING = JobState.RUNNING
_ZERO = b"0"
_UNKNOWN_STATUS = b"\x000\x000\x000\x000"

MAX_CLIENT_ID = 127
"""SET_CLIENT_ID is stored truncated to 127 bytes, as gearmand does (PROTOCOL.md §1.4)."""
MAX_OPTION = 64
"""OPTION_REQ names this long or longer are unknown options to gearmand."""
MAX_HANDLE = 64
"""gearmand's GEARMAND_JOB_HANDLE_SIZE: a WORK_FAIL handle this long is refused (PROTOCOL.md §1.4)."""
MAX_EPOCH = 2**63 - 1
"""SUBMIT_JOB_EPOCH times beyond a signed 64-bit ``time_t`` are refused."""

_INVALID_COMMAND = b"INVALID_COMMAND\0Command not expected"
_NOT_FOUND_RESULT = b"JOB_NOT_FOUND\0Job given in work result not found"
_NOT_FOUND_DATA = b"JOB_NOT_FOUND\0Job does not exist on server"
_NOT_FOUND_EXCEPTION = b"JOB_NOT_FOUND\0An exception was received for a job that does not exist"
_HANDLE_TOO_LARGE = b"ARGUMENT_TOO_LARGE\0Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf"
_UNKNOWN_OPTION = b"UNKNOWN_OPTION\0Server does not recognize given option"


def packet_table(board: Board) -> dict[PacketType, Handler]:
    """The handler of every packet type for ``board``."""
    return _Handlers(board).table()


def status_body(board: Board, handle: bytes) -> bytes:
    """STATUS_RES body for ``handle`` (truncated at a NUL like gearmand, §1.3)."""
    nul = handle.find(b"\0")
    if nul >= 0:
        handle = handle[:nul]
    job = board.jobs.get(handle)
    if job is None:
        return handle + _UNKNOWN_STATUS
    running = b"1" if job.state is _RUNNING else _ZERO
    return b"\0".join((handle, b"1", running, job.numerator, job.denominator))


def newest_by_unique(board: Board, unique: bytes) -> Job[Peer] | None:
    """The most recently created live job with this unique, whatever its function (PROTOCOL.md §3.6)."""
    if not unique:
        return None
    found: Job[Peer] | None = None
    newest = -1
    for function in board.functions.values():
        job = function.by_unique(unique)
        if job is not None:
            tail = job.handle.rpartition(b":")[2]
            number = int(tail) if tail.isdigit() else 0
            if number > newest:
                found, newest = job, number
    return found


def status_unique_body(board: Board, unique: bytes) -> bytes:
    """STATUS_RES_UNIQUE body: unique, known, running, numerator, denominator, attached clients."""
    job = newest_by_unique(board, unique)
    if job is None:
        return unique + _UNKNOWN_STATUS + b"\x000"
    running = b"1" if job.state is _RUNNING else _ZERO
    clients = str(len(job.clients or ())).encode()
    return b"\0".join((unique, b"1", running, job.numerator, job.denominator, clients))


def _relay(job: Job[Peer], ptype: int, handle: bytes, data: bytes) -> None:
    """Send ``handle\\0data`` to every client attached to ``job``, the most recently attached first."""
    if job.clients:
        head = handle + b"\0"
        for client in job.attached():
            client.send_with(ptype, head, data)


class _Handlers:
    """The handlers of one board, as bound methods (the table holds them, nothing else holds this object)."""

    __slots__ = ("board",)

    def __init__(self, board: Board) -> None:
        self.board = board

    def table(self) -> dict[PacketType, Handler]:
        table: dict[PacketType, Handler] = {
            _T.CAN_DO: self._on_can_do,
            _T.CANT_DO: self._on_cant_do,
            _T.RESET_ABILITIES: self._on_reset_abilities,
            _T.PRE_SLEEP: self._on_pre_sleep,
            _T.SUBMIT_JOB: self._submitter(_NORMAL, False),
            _T.SUBMIT_JOB_BG: self._submitter(_NORMAL, True),
            _T.SUBMIT_JOB_HIGH: self._submitter(_HIGH, False),
            _T.SUBMIT_JOB_HIGH_BG: self._submitter(_HIGH, True),
            _T.SUBMIT_JOB_LOW: self._submitter(_LOW, False),
            _T.SUBMIT_JOB_LOW_BG: self._submitter(_LOW, True),
            _T.SUBMIT_JOB_EPOCH: self._on_submit_epoch,
            _T.SUBMIT_REDUCE_JOB: self._reduce_submitter(False),
            _T.SUBMIT_REDUCE_JOB_BACKGROUND: self._reduce_submitter(True),
            _T.GRAB_JOB: self._on_grab_job,
            _T.GRAB_JOB_UNIQ: self._on_grab_job_uniq,
            _T.GRAB_JOB_ALL: self._on_grab_job_all,
            _T.WORK_STATUS: self._on_work_status,
            _T.WORK_COMPLETE: self._on_work_complete,
            _T.WORK_FAIL: self._on_work_fail,
            _T.WORK_EXCEPTION: self._on_work_exception,
            _T.WORK_DATA: self._forwarder(_T.WORK_DATA),
            _T.WORK_WARNING: self._forwarder(_T.WORK_WARNING),
            _T.GET_STATUS: self._on_get_status,
            _T.GET_STATUS_UNIQUE: self._on_get_status_unique,
            _T.ECHO_REQ: self._on_echo,
            _T.SET_CLIENT_ID: self._on_set_client_id,
            _T.CAN_DO_TIMEOUT: self._on_can_do_timeout,
            _T.OPTION_REQ: self._on_option,
        }
        # RES-only types, the never-implemented ALL_YOURS and UNUSED, and cron-style SUBMIT_JOB_SCHED (§2).
        for ptype in PacketType:
            table.setdefault(ptype, self._on_unexpected)
        return table

    # -- workers' registrations and sleep ------------------------------------------------------------------

    def _on_unexpected(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.board.stats.bad_input["command"] += 1  # counted
        peer.send(_ERROR, _INVALID_COMMAND)

    def _on_can_do(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.board.can_do(peer, args[0])

    def _on_can_do_timeout(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.board.can_do(peer, args[0], seconds(args[1]))

    def _on_cant_do(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.board.cant_do(peer, args[0])

    def _on_reset_abilities(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.board.cant_do(peer, None)

    def _on_pre_sleep(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.board.pre_sleep(peer)

    # -- connection options --------------------------------------------------------------------------------

    def _on_set_client_id(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.client_id = args[0][:MAX_CLIENT_ID]

    def _on_echo(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.send(_ECHO_RES, args[0])

    def _on_option(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        option = args[0]
        if len(option) < MAX_OPTION and option.split(b"\0", 1)[0].lower() == b"exceptions":
            peer.exceptions = True
            peer.send(_OPTION_RES, option)
        else:
            peer.send(_ERROR, _UNKNOWN_OPTION)

    # -- submissions ---------------------------------------------------------------------------------------

    def _submitter(self, priority: Priority, background: bool) -> Handler:
        board = self.board

        def on_submit(peer: Peer, args: tuple[bytes, ...]) -> None:
            try:
                job = board.submit(
                    args[0], args[1], args[2], priority=priority, background=background,
                    client=None if background else peer,
                )  # fmt: skip
            except Refused as refused:
                peer.send(_ERROR, refused.body)
                return
            board.acknowledge(peer, job)

        return on_submit

    def _reduce_submitter(self, background: bool) -> Handler:
        board = self.board

        def on_submit(peer: Peer, args: tuple[bytes, ...]) -> None:
            name, unique, reducer, _aggregator, workload = args
            try:
                job = board.submit(
                    name, unique, workload, background=background, reducer=reducer,
                    client=None if background else peer,
                )  # fmt: skip
            except Refused as refused:
                peer.send(_ERROR, refused.body)
                return
            board.acknowledge(peer, job)

        return on_submit

    def _on_submit_epoch(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        board = self.board
        name, unique, epoch, workload = args
        when = c_atoi(epoch)
        try:
            if not -MAX_EPOCH <= when <= MAX_EPOCH:
                raise Refused(b"ARGUMENT_TOO_LARGE", b"Epoch time out of range")
            job = board.submit(name, unique, workload, background=True, when=float(when), now=board.now)
        except Refused as refused:
            peer.send(_ERROR, refused.body)
            return
        board.acknowledge(peer, job)

    # -- grabs ---------------------------------------------------------------------------------------------

    def _on_grab_job(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        board = self.board
        job = board.grab(peer, board.now)
        if job is None:
            peer.send(_NO_JOB, b"")
            return
        peer.send_with(_JOB_ASSIGN, job.handle + b"\0" + job.function.name + b"\0", job.workload)

    def _on_grab_job_uniq(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        board = self.board
        job = board.grab(peer, board.now)
        if job is None:
            peer.send(_NO_JOB, b"")
            return
        head = b"\0".join((job.handle, job.function.name, job.unique, b""))
        peer.send_with(_JOB_ASSIGN_UNIQ, head, job.workload)

    def _on_grab_job_all(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        board = self.board
        job = board.grab(peer, board.now)
        if job is None:
            peer.send(_NO_JOB, b"")
            return
        reducer = job.extras.reducer  # not ``job.reducer``: a descriptor call, on every hand-out
        if reducer is None:
            # gearmand answers GRAB_JOB_ALL with JOB_ASSIGN_UNIQ unless the job has a reducer (§6.1 #1).
            head = b"\0".join((job.handle, job.function.name, job.unique, b""))
            peer.send_with(_JOB_ASSIGN_UNIQ, head, job.workload)
        else:
            head = b"\0".join((job.handle, job.function.name, job.unique, reducer, b""))
            peer.send_with(_JOB_ASSIGN_ALL, head, job.workload)

    # -- results -------------------------------------------------------------------------------------------

    def _on_work_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle, numerator, denominator = args
        job = self._held(peer, handle, _NOT_FOUND_RESULT)
        if job is None:
            return
        # gearmand stores atoi() of each field but forwards the raw text (PROTOCOL.md §3.6).
        job.numerator = str(c_atoi(numerator)).encode()
        job.denominator = str(c_atoi(denominator)).encode()
        if job.clients:
            body = b"\0".join(args)
            for client in job.attached():
                client.send(_WORK_STATUS, body)

    def _held(self, peer: Peer, handle: bytes, error: bytes) -> Job[Peer] | None:
        """The job ``peer`` runs as ``handle``, or None after answering ERROR ``error``."""
        job = self.board.held(peer, handle)
        if job is None:
            peer.send(_ERROR, error)
        return job

    def _ending(self, peer: Peer, handle: bytes) -> Job[Peer] | None:
        """The job a WORK_COMPLETE or WORK_FAIL ends, or None after answering JOB_NOT_FOUND; silently None for the
        job this worker just ended with WORK_EXCEPTION: Perl's Gearman::Worker sends WORK_FAIL or WORK_COMPLETE
        after it, and dies on gearmand's ERROR (README, Compatibility; #13 item 13)."""
        if handle == peer.excepted:
            peer.excepted = None
            return None
        return self._held(peer, handle, _NOT_FOUND_RESULT)

    def _on_work_complete(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle, result = args
        job = self._ending(peer, handle)
        if job is not None:
            _relay(job, _WORK_COMPLETE, handle, result)
            board = self.board
            counters = job.function.counters  # counted
            counters.completed += 1  # counted
            counters.bytes_out += len(result)  # counted
            ran = board.now - job.at  # counted (Histogram.observe, inlined: it runs for every job)
            run = counters.run  # counted
            run.buckets[bisect_left(BUCKETS, ran)] += 1  # counted
            run.total += ran  # counted
            board.finish(job)

    def _on_work_fail(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle = args[0]
        if len(handle) >= MAX_HANDLE:
            peer.send(_ERROR, _HANDLE_TOO_LARGE)
            return
        job = self._ending(peer, handle)
        if job is not None:
            board = self.board
            counters = job.function.counters  # counted
            counters.failed += 1  # counted
            counters.run.observe(board.now - job.at)  # counted
            board.fail(job)

    def _on_work_exception(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle, data = args
        job = self._held(peer, handle, _NOT_FOUND_EXCEPTION)
        if job is None:
            return
        head = handle + b"\0"
        for client in job.attached():
            if client.exceptions:
                client.send_with(_WORK_EXCEPTION, head, data)
            else:
                # gearmand sends `handle\0` here; the bare handle is what clients match (PROTOCOL.md §6.1 #3).
                client.send(_WORK_FAIL, handle)
        board = self.board
        counters = job.function.counters  # counted
        counters.exceptions += 1  # counted
        counters.bytes_out += len(data)  # counted
        counters.run.observe(board.now - job.at)  # counted
        board.finish(job)
        peer.excepted = handle

    def _forwarder(self, ptype: PacketType) -> Handler:
        held = self._held
        code = int(ptype)

        def on_work(peer: Peer, args: tuple[bytes, ...]) -> None:
            handle, data = args
            job = held(peer, handle, _NOT_FOUND_DATA)
            if job is not None:
                job.function.counters.bytes_out += len(data)  # counted
                _relay(job, code, handle, data)

        return on_work

    # -- status --------------------------------------------------------------------------------------------

    def _on_get_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.send(_STATUS_RES, status_body(self.board, args[0]))

    def _on_get_status_unique(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.send(_STATUS_RES_UNIQUE, status_unique_body(self.board, args[0]))
