"""``gearworks work``: a worker from the shell. Each job's workload goes to COMMAND's stdin and its stdout is the
result (like ``gearman -w``); or ``--module pkg.mod:worker`` runs a Python worker object."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shlex
from typing import Any

from gearworks.cli.servers import add_server_arguments, connection_keywords, servers
from gearworks.worker import AsyncWorker, Worker, WorkerJob

__all__ = ["CommandHandler", "load_worker", "register"]

EXAMPLES = """examples:
  gearworks work -f reverse -- rev                   each workload through `rev`
  gearworks work -f wc -f count --concurrency 8 -- wc -w
  gearworks work -f resize -c 100 -- ./resize.sh     exit after 100 jobs
  gearworks work --module myapp.jobs:worker          a gearworks Worker/AsyncWorker object (or factory)
"""


class CommandHandler:
    """Runs COMMAND per job: workload on stdin, stdout as the result, stderr as a warning, non-zero exit fails."""

    def __init__(self, command: list[str]) -> None:
        self.command = command

    async def __call__(self, job: WorkerJob) -> bytes:
        process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await process.communicate(job.workload)
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        if stderr:
            job.warning(stderr)
        if process.returncode != 0:
            job.fail()
        return stdout


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``work`` subcommand."""
    parser = subparsers.add_parser(
        "work",
        add_help=False,
        help="run a worker (gearman -w)",
        description="Serve functions with a shell command (after --) or a Python worker object (--module).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS: run per job")
    parser.add_argument("-f", "--function", action="append", default=[], help="function to serve (repeatable)")
    parser.add_argument("-c", "--count", type=int, metavar="N", help="exit after N jobs")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N", help="jobs at once (default 1)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="per-job run limit sent as CAN_DO_TIMEOUT")
    parser.add_argument("--client-id", help="name shown by admin workers")
    parser.add_argument("--prefix", help="function name prefix (prefix + TAB + name), as the clients use")
    parser.add_argument("--module", metavar="MODULE:NAME", help="run this Worker/AsyncWorker object or factory")
    add_server_arguments(parser)
    parser.set_defaults(handler=run)


def load_worker(spec: str, servers_given: list[Any]) -> AsyncWorker | Worker:
    """Import ``pkg.mod:name``: a worker object, or a callable that makes one from ``servers=``.

    Raises:
        ValueError: the spec does not name a worker or a factory of one.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--module {spec!r}: expected MODULE:NAME")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--module {spec!r}: {exc}") from exc
    if not isinstance(target, AsyncWorker | Worker) and callable(target):
        target = target(servers=servers_given)
    if not isinstance(target, AsyncWorker | Worker):
        raise ValueError(f"--module {spec!r} is {type(target).__name__}, not a gearworks Worker or AsyncWorker")
    return target


def run(args: argparse.Namespace) -> int:
    """Serve until -c jobs, SIGTERM/SIGINT (draining the jobs in hand) or a stop."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.module:
        if command or args.function:
            raise ValueError("--module runs a worker object: give no -f or COMMAND with it")
        worker = load_worker(args.module, servers(args))
    else:
        if not command or not args.function:
            raise ValueError("give -f FUNCTION (one or more) and -- COMMAND, or --module MODULE:NAME")
        worker = AsyncWorker(
            servers(args),
            **connection_keywords(args),
            concurrency=args.concurrency,
            client_id=args.client_id,
            prefix=args.prefix,
        )
        handler = CommandHandler(command)
        for function in args.function:
            worker.register(function, handler, timeout=args.timeout)
        print(f"serving {', '.join(args.function)} with {shlex.join(command)}", flush=True)
    if isinstance(worker, AsyncWorker):
        asyncio.run(worker.work(args.count))
    else:
        worker.work(args.count)
    return 0
