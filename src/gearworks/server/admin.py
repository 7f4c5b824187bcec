"""The job server's side of the admin text protocol: one command line in, gearmand 1.1.20's exact reply bytes out.

Replies reproduce gearmand's mixed line endings (PROTOCOL.md §4.1, §4.2); the Perl Gearman::Server's ``jobs`` and
``clients`` commands (§4.4), ``shutdown [graceful]`` (§7) and gearworks' own ``dead`` commands (dead letters of
``--job-retries``) and ``stats`` (counters of ``server/stats.py``) are added. Reads and changes the board only;
what the connection must do afterwards (close it, stop the server) is returned as an ``AdminAction``.

Commands that change state (``shutdown``, ``maxqueue``, ``cancel job``, ``create/drop function``, ``dead
requeue/purge``) are answered only for peers ``AdminCommands.may_change`` lets through: loopback and Unix-socket
peers by default, or, with ``--admin-allow``, exactly the listed networks (and Unix-socket peers, whose access the
socket file's permissions decide). Reading commands are open to everyone, as in gearmand.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable
from enum import Enum

from gearworks.protocol.admin import MAX_WORDS, format_block, split_words
from gearworks.protocol.fields import c_atoi
from gearworks.server.board import Board
from gearworks.server.peers import Peer
from gearworks.server.stats import FunctionCounters, Histogram

__all__ = ["VERBOSE_LEVELS", "AdminAction", "AdminCommands", "Network", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``--admin-allow`` values (``10.0.0.0/8``, ``192.0.2.7``, ``::1``) as networks.

    Raises:
        ValueError: a value is not an address or CIDR network.
    """
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"--admin-allow {spec!r}: not an address or CIDR network") from exc
    return tuple(networks)


VERBOSE_LEVELS = ("FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")
"""gearmand's ``--verbose`` levels, least verbose first."""


class AdminAction(Enum):
    """What the connection does after sending the reply."""

    NONE = "none"
    CLOSE = "close"
    SHUTDOWN = "shutdown"
    GRACEFUL = "graceful"


def _unknown(word: bytes) -> bytes:
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + word + b"\r\n"


def _invalid(command: bytes) -> bytes:
    return b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+" + command + b"\r\n"


_OK = b"OK\r\n"
_NONE = AdminAction.NONE
_DENIED = b"ERR PERMISSION_DENIED this+command+changes+the+server+and+is+not+allowed+from+this+address\r\n", _NONE


class AdminCommands:
    """Answers admin lines against a board.

    Args:
        board: the job board queried and changed.
        version: what ``version`` prints after ``OK``.
        verbose: the ``--verbose`` level name printed by ``verbose``.
        allow_remote_shutdown: accept ``shutdown`` from any peer, whatever ``admin_allow`` says.
        admin_allow: the networks whose peers may change state; None: loopback peers. Unix-socket peers always may.
    """

    def __init__(
        self,
        board: Board,
        *,
        version: bytes,
        verbose: str = "ERROR",
        allow_remote_shutdown: bool = False,
        admin_allow: Iterable[Network] | None = None,
    ) -> None:
        self.board = board
        self.version = version
        self.verbose = verbose.encode()
        self.allow_remote_shutdown = allow_remote_shutdown
        self.admin_allow = tuple(admin_allow) if admin_allow is not None else None
        self._commands: dict[bytes, Callable[[Peer, list[bytes]], tuple[bytes, AdminAction]]] = {
            b"status": self._status,
            b"prioritystatus": self._prioritystatus,
            b"workers": self._workers,
            b"show": self._show,
            b"cancel": self._cancel,
            b"create": self._create,
            b"drop": self._drop,
            b"maxqueue": self._maxqueue,
            b"getpid": self._getpid,
            b"verbose": self._verbose,
            b"version": self._version,
            b"shutdown": self._shutdown,
            b"jobs": self._jobs,
            b"clients": self._clients,
            b"dead": self._dead,
            b"stats": self._stats,
        }

    def add_command(self, name: bytes, command: Callable[[Peer, list[bytes]], tuple[bytes, AdminAction]]) -> None:
        """Answer the command ``name`` (lower case) with ``command(peer, words)``: a mode's own commands (the
        cluster's ``cluster``). ``command`` must return its reply at once: admin replies leave a connection in the
        order of its requests."""
        self._commands[name] = command

    def handle(self, peer: Peer, line: bytes) -> tuple[bytes, AdminAction]:
        """The reply to one command line (line ending already removed) and what to do next."""
        words = split_words(line)
        if len(words) > MAX_WORDS:
            # gearmand closes the connection without a reply (PROTOCOL.md §4.1); say why first.
            return b"ERR TOO_MANY_ARGUMENTS more+than+5+words\r\n", AdminAction.CLOSE
        command = self._commands.get(words[0].lower())
        if command is None:
            self.board.stats.bad_input["admin"] += 1
            return _unknown(words[0]), _NONE
        return command(peer, words)

    def may_change(self, peer: Peer) -> bool:
        """Whether ``peer`` may run commands that change state (see the module docstring).

        A peer connecting through a proxy on this host has the proxy's address, so it counts as loopback unless
        ``admin_allow`` is given without the loopback networks.
        """
        if self.admin_allow is None:
            return peer.local
        try:
            address = ipaddress.ip_address(peer.host.decode("ascii").split("%", 1)[0])
        except ValueError:
            return True  # a Unix-socket peer: no address, the socket file's permissions decide
        return any(address in network for network in self.admin_allow)

    # -- lists ---------------------------------------------------------------------------------------------

    def _status(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        lines = [
            b"%s\t%d\t%d\t%d" % (function.name, function.total, function.running, len(function.workers))
            for function in self.board.functions.values()
        ]
        return format_block(lines), _NONE

    def _prioritystatus(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        lines = []
        for function in self.board.functions.values():
            high, normal, low = function.counts
            lines.append(
                b"%s\t%d\t%d\t%d\t%d" % (function.name, high, normal + function.delayed, low, len(function.workers))
            )
        return format_block(lines), _NONE

    def _workers(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        lines = []
        for each in self.board.peers:
            names = b"".join(b" " + function.name for function in reversed(each.abilities))
            lines.append(b"%d %s %s :%s" % (each.fd, each.host, each.client_id, names))
        return format_block(lines), _NONE

    def _show(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        lowered = [word.lower() for word in words]
        if len(words) == 1:
            return _unknown(words[0]), _NONE
        if lowered[1:] == [b"jobs"]:
            # IGNORED is 1 for a running job whose clients all left (queued ones are removed at once).
            lines = [
                b"%s\t%d\t%d\t%d" % (job.handle, job.retries, not (job.background or job.clients), job.background)
                for job in self.board.jobs.values()
            ]
            return format_block(lines), _NONE
        if lowered[1:] == [b"unique", b"jobs"]:
            return format_block(job.unique for job in self.board.jobs.values()), _NONE
        return b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n", _NONE

    def _jobs(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        lines = []
        for job in self.board.jobs.values():
            worker = job.worker.address if job.worker is not None else b"-"
            lines.append(b"%s\t%s\t%s\t%d" % (job.function.name, job.unique, worker, len(job.clients or ())))
        return format_block(lines), _NONE

    def _clients(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        lines = []
        for each in self.board.peers:
            lines.append(each.address)
            for job in each.waiting:
                worker = job.worker.address if job.worker is not None else b"-"
                lines.append(b"\t%s\t%s\t%s" % (job.function.name, job.unique, worker))
        return format_block(lines), _NONE

    # -- changes -------------------------------------------------------------------------------------------

    def _cancel(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        if len(words) < 3:
            return _unknown(words[0]), _NONE
        if len(words) > 3 or words[1].lower() != b"job":
            return b"ERR UNKNOWN_ERROR\r\n", _NONE
        if not self.may_change(peer):
            return _DENIED
        return (_OK if self.board.cancel(words[2]) else b"ERR UNKNOWN_JOB\r\n"), _NONE

    def _create(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        if len(words) != 3 or words[1].lower() != b"function":
            return _invalid(b"create"), _NONE
        if not self.may_change(peer):
            return _DENIED
        # gearmand drops the name's last byte on a `\n`-only line (PROTOCOL.md §6.1 #7); the full name is kept.
        self.board.function(words[2])
        return _OK, _NONE

    def _drop(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        if len(words) != 3 or words[1].lower() != b"function":
            return _invalid(b"drop"), _NONE
        if not self.may_change(peer):
            return _DENIED
        functions = self.board.functions
        name = words[2]
        if name not in functions:
            name = next((each for each in functions if each.lower() == name.lower()), name)
        function = functions.get(name)
        if function is None:
            return b"ERR function not found\r\n", _NONE
        # gearmand drops a function with queued jobs and orphans them (§6.1 #8): refused here instead.
        if not function.idle:
            return b"ERR there are still connected workers or executing clients\r\n", _NONE
        del functions[name]
        return _OK, _NONE

    def _maxqueue(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        if len(words) < 2:
            return _invalid(b"maxqueue"), _NONE
        if not self.may_change(peer):
            return _DENIED
        numbers = [max(c_atoi(word), 0) for word in words[2:]]
        if not numbers:
            caps = (0, 0, 0)
        elif len(numbers) == 1:
            caps = (numbers[0],) * 3
        elif len(numbers) == 2:
            caps = (numbers[0], numbers[1], 0)
        else:
            caps = (numbers[0], numbers[1], numbers[2])
        if any(caps):
            # gearmand ignores a cap for a function it has not seen; here the cap creates it (#13 item 14).
            self.board.function(words[1]).maxqueue = caps
        elif (function := self.board.functions.get(words[1])) is not None:
            function.maxqueue = None
        return _OK, _NONE

    # -- dead letters (gearworks only) ---------------------------------------------------------------------

    def _dead(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        """``dead [list]``: ``HANDLE\\tFUNCTION\\tUNIQUE\\tRETRIES`` lines; ``dead requeue|purge HANDLE|all``:
        ``OK <count>``."""
        action = words[1].lower() if len(words) > 1 else b"list"
        if action == b"list" and len(words) <= 2:
            lines = [
                b"%s\t%s\t%s\t%d" % (dead.handle, dead.function, dead.unique, dead.retries)
                for dead in self.board.dead.values()
            ]
            return format_block(lines), _NONE
        change = {b"requeue": self.board.requeue_dead, b"purge": self.board.purge_dead}.get(action)
        if change is None or len(words) != 3:
            return _invalid(b"dead"), _NONE
        if not self.may_change(peer):
            return _DENIED
        handle = None if words[2].lower() == b"all" else words[2]
        count = change(handle)
        if handle is not None and not count:
            return b"ERR UNKNOWN_JOB\r\n", _NONE
        return b"OK %d\r\n" % count, _NONE

    # -- counters (gearworks only) -------------------------------------------------------------------------

    def _stats(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        """``stats [FUNCTION]``: one line per function (or just FUNCTION; none when unknown), tab-separated:
        ``NAME QUEUED RUNNING WORKERS FG_HIGH FG_NORMAL FG_LOW BG_HIGH BG_NORMAL BG_LOW COMPLETED FAILED EXCEPTIONS
        RETRIED TIMED_OUT CANCELLED DEAD_LETTERED BYTES_IN BYTES_OUT WAIT_P50 WAIT_P99 RUN_P50 RUN_P99``; the
        FG/BG columns are jobs submitted per priority, the last four seconds estimated from the histograms (``-``
        before the first observation)."""
        if len(words) > 2:
            return _invalid(b"stats"), _NONE
        functions = self.board.functions
        counters = self.board.stats.functions
        names = [words[1]] if len(words) == 2 else list(dict.fromkeys((*functions, *counters)))
        lines = []
        for name in names:
            function = functions.get(name)
            each = counters.get(name)
            if function is None and each is None:
                continue
            if function is None:
                gauges = b"0\t0\t0"
            else:
                queued = sum(function.counts) + function.delayed
                gauges = b"%d\t%d\t%d" % (queued, function.running, len(function.workers))
            each = each or FunctionCounters(name)  # a function created, nothing counted yet
            submitted = each.submitted
            numbers = (
                *(submitted[priority * 2] for priority in range(3)),
                *(submitted[priority * 2 + 1] for priority in range(3)),
                each.completed, each.failed, each.exceptions, each.retried, each.timed_out, each.cancelled,
                each.dead_lettered, each.bytes_in, each.bytes_out,
            )  # fmt: skip
            latencies = (_seconds(each.wait, 0.5), _seconds(each.wait, 0.99), _seconds(each.run, 0.5),
                         _seconds(each.run, 0.99))  # fmt: skip
            lines.append(b"\t".join((name, gauges, *(b"%d" % number for number in numbers), *latencies)))
        return format_block(lines), _NONE

    # -- server --------------------------------------------------------------------------------------------

    def _getpid(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        return b"OK %d\n" % os.getpid(), _NONE

    def _verbose(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        return b"OK " + self.verbose + b"\n", _NONE

    def _version(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        return b"OK " + self.version + b"\n", _NONE

    def _shutdown(self, peer: Peer, words: list[bytes]) -> tuple[bytes, AdminAction]:
        # Removed from gearmand in 1.1.15 (§4.2); kept here for loopback and Unix-socket peers (§7).
        if not (self.allow_remote_shutdown or self.may_change(peer)) or len(words) > 2:
            return _unknown(words[0]), _NONE
        if len(words) == 2:
            if words[1].lower() != b"graceful":
                return _unknown(words[0]), _NONE
            return b"OK\n", AdminAction.GRACEFUL
        return b"OK\n", AdminAction.SHUTDOWN


def _seconds(histogram: Histogram, q: float) -> bytes:
    value = histogram.quantile(q)
    return b"-" if value is None else b"%.6f" % value
