"""``gearworks admin``: gearadmin's commands (and its flag spellings) for every configured server, as tables for
people or ``--json`` for scripts."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gearworks.admin import Admin
from gearworks.cli.servers import add_server_arguments, connection_keywords, servers

__all__ = ["register"]

EXAMPLES = """examples:
  gearworks admin status                  functions: queued, running, workers
  gearworks admin --workers -h gear1      gearadmin's spelling works too
  gearworks admin maxqueue resize 100     cap a function's queue
  gearworks admin cancel-job H:vm:12
  gearworks admin requeue-dead            put every dead letter back in its queue
  gearworks admin stats resize --json     one function's counters and latencies
  gearworks admin cluster --json          the nodes of a --cluster, their leases and jobs
  gearworks admin status --json --servers gear1:4730,gear2:4730
"""

Action = Callable[[Admin, list[str]], Any]


def _maxqueue(admin: Admin, params: list[str]) -> str:
    if len(params) not in (1, 2, 4):
        raise ValueError("usage: gearworks admin maxqueue FUNCTION [SIZE | HIGH NORMAL LOW]")
    sizes = [int(value) for value in params[1:]]
    admin.maxqueue(params[0], (sizes[0], sizes[1], sizes[2]) if len(sizes) == 3 else (sizes[0] if sizes else None))
    return "OK"


def _one(params: list[str], what: str) -> str:
    if len(params) != 1:
        raise ValueError(f"give exactly one {what}")
    return params[0]


def _create(admin: Admin, params: list[str]) -> str:
    admin.create_function(_one(params, "function"))
    return "OK"


def _drop(admin: Admin, params: list[str]) -> str:
    admin.drop_function(_one(params, "function"))
    return "OK"


def _cancel(admin: Admin, params: list[str]) -> str:
    admin.cancel_job(_one(params, "job handle"))
    return "OK"


def _optional(params: list[str]) -> str | None:
    if len(params) > 1:
        raise ValueError("give one job handle, or none for all")
    return params[0] if params else None


def _requeue_dead(admin: Admin, params: list[str]) -> str:
    return f"OK {admin.requeue_dead(_optional(params))}"


def _purge_dead(admin: Admin, params: list[str]) -> str:
    return f"OK {admin.purge_dead(_optional(params))}"


def _stats(admin: Admin, params: list[str]) -> object:
    if len(params) > 1:
        raise ValueError("give one function, or none for all")
    return admin.stats(params[0] if params else None)


def _shutdown(admin: Admin, params: list[str]) -> str:
    if params not in ([], ["graceful"]):
        raise ValueError("usage: gearworks admin shutdown [graceful]")
    admin.shutdown(graceful=bool(params))
    return "OK"


ACTIONS: dict[str, tuple[Action, str]] = {
    "status": (lambda a, _: a.status(), "functions: total jobs, running, workers"),
    "workers": (lambda a, _: a.workers(), "connections and the functions they can do"),
    "version": (lambda a, _: a.version(), "server version"),
    "getpid": (lambda a, _: a.getpid(), "server process id"),
    "verbose": (lambda a, _: a.verbose(), "server log level"),
    "priority-status": (lambda a, _: a.prioritystatus(), "queued jobs per priority"),
    "show-jobs": (lambda a, _: a.show_jobs(), "every job: handle, retries, ignored, persisted"),
    "show-unique-jobs": (lambda a, _: a.show_unique_jobs(), "unique keys of every job"),
    "maxqueue": (_maxqueue, "FUNCTION [SIZE | HIGH NORMAL LOW]: cap a function's jobs"),
    "create-function": (_create, "NAME: create a function"),
    "drop-function": (_drop, "NAME: drop a function"),
    "cancel-job": (_cancel, "HANDLE: cancel a job"),
    "shutdown": (_shutdown, "[graceful]: stop the server"),
    "jobs": (lambda a, _: a.jobs(), "queued jobs (Perl Gearman::Server, gearworks)"),
    "clients": (lambda a, _: a.clients(), "clients and the jobs they wait on (Perl Gearman::Server, gearworks)"),
    "dead-letters": (lambda a, _: a.dead_letters(), "jobs buried after --job-retries (gearworks)"),
    "requeue-dead": (_requeue_dead, "[HANDLE]: requeue one dead letter, or all (gearworks)"),
    "purge-dead": (_purge_dead, "[HANDLE]: forget one dead letter, or all (gearworks)"),
    "stats": (_stats, "[FUNCTION]: counters and p50/p99 wait and run times per function (gearworks)"),
    "cluster": (lambda a, _: a.cluster(), "nodes sharing the store: leases, jobs owned (gearworks --cluster)"),
}
# gearadmin's flags and the action each stands for (``--create-function NAME`` takes the name).
GEARADMIN_FLAGS = {
    "--status": "status",
    "--workers": "workers",
    "--server-version": "version",
    "--getpid": "getpid",
    "--server-verbose": "verbose",
    "--priority-status": "priority-status",
    "--show-jobs": "show-jobs",
    "--show-unique-jobs": "show-unique-jobs",
    "--create-function": "create-function",
    "--drop-function": "drop-function",
    "--cancel-job": "cancel-job",
    "--shutdown": "shutdown",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``admin`` subcommand."""
    actions = "\n".join(f"  {name:18} {text}" for name, (_, text) in ACTIONS.items())
    parser = subparsers.add_parser(
        "admin",
        add_help=False,
        help="administer job servers (gearadmin)",
        description="Send admin commands to every configured job server.",
        epilog=f"actions:\n{actions}\n\n{EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", nargs="?", metavar="ACTION", help="one of the actions below")
    parser.add_argument("params", nargs="*", metavar="ARG", help="the action's arguments")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    flags = parser.add_argument_group("gearadmin spellings")
    for flag, action in GEARADMIN_FLAGS.items():
        takes = action in ("create-function", "drop-function", "cancel-job")
        flags.add_argument(
            flag,
            dest="flag_action",
            action=_FlagAction,
            nargs=1 if takes else 0,
            const=action,
            metavar="NAME" if takes else None,
            help=f"same as `{action}`",
        )
    add_server_arguments(parser)
    parser.set_defaults(handler=run, flag_action=None)


class _FlagAction(argparse.Action):
    """Stores (action, params) for a gearadmin flag."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        namespace.flag_action = (self.const, list(values or []))


def run(args: argparse.Namespace) -> int:
    """Run the chosen action on each server and print the results."""
    if args.flag_action is not None:
        name, params = args.flag_action
    elif args.action is not None:
        name, params = args.action, list(args.params)
    else:
        name, params = "status", []
    if name not in ACTIONS:
        raise ValueError(f"unknown action {name!r} (see gearworks admin --help)")
    action = ACTIONS[name][0]
    addresses = servers(args)
    connection = connection_keywords(args)
    results = []
    for address in addresses:
        with Admin(address, **connection) as admin:
            results.append((str(address), action(admin, params)))
    if args.json:
        payload: Any = {server: _jsonable(result) for server, result in results}
        json.dump(payload if len(results) > 1 else payload[results[0][0]], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for server, result in results:
        if len(results) > 1:
            print(f"== {server}")
        print(_render(result))
    return 0


def _text(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, tuple | list):
        return [_text(item) for item in value]
    return value


def _jsonable(result: object) -> object:
    if isinstance(result, list):
        return [_jsonable(row) for row in result]
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        row = {field.name: _jsonable(getattr(result, field.name)) for field in dataclasses.fields(result)}
        for extra in ("queued", "submitted"):
            if hasattr(result, extra):
                row[extra] = getattr(result, extra)
        return row
    return _text(result)


def _render(result: object) -> str:
    """A list of rows as an aligned table; anything else as one line."""
    if not isinstance(result, list):
        return str(_text(result))
    if not result:
        return "(none)"
    if not dataclasses.is_dataclass(result[0]):
        return "\n".join(str(_text(item)) for item in result)
    names = [field.name for field in dataclasses.fields(result[0])]
    rows = [[_cell(getattr(row, name)) for name in names] for row in result]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(names)]
    lines = ["  ".join(name.upper().ljust(width) for name, width in zip(names, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    text = _text(value)
    if isinstance(text, list):
        return " ".join(str(_cell(item)) for item in text) or "-"
    if text is None:
        return "-"
    if isinstance(text, bool):
        return "yes" if text else "no"
    return str(text)
