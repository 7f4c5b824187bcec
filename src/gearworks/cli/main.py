"""Entry point of the ``gearworks`` command: builds the argument parser from the subcommand modules, runs one, and
turns gearworks errors into one clear line and a distinct exit status (never a traceback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gearworks._version import __version__
from gearworks.cli import admin, demo, serve, submit, top, work
from gearworks.errors import (
    ConnectionLost,
    GearworksError,
    JobError,
    NoServerAvailable,
    ProtocolError,
    QueueError,
    ServerError,
)

EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_SERVER_ERROR = 4
EXIT_PROTOCOL_ERROR = 5
EXIT_QUEUE_ERROR = 6
EXIT_INTERRUPTED = 130

_EXIT_CODES: tuple[tuple[type[GearworksError], int], ...] = (
    (JobError, EXIT_JOB_FAILED),
    (ConnectionLost, EXIT_UNREACHABLE),
    (NoServerAvailable, EXIT_UNREACHABLE),
    (ServerError, EXIT_SERVER_ERROR),
    (ProtocolError, EXIT_PROTOCOL_ERROR),
    (QueueError, EXIT_QUEUE_ERROR),
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="gearworks",
        description="Gearman job server, clients, workers and admin tools.",
        epilog="exit status: 0 ok, 1 a job failed, 2 usage, 3 server unreachable, 4 server refused, "
        "5 protocol error, 6 queue error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"gearworks {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.register(subparsers)
    demo.register(subparsers)
    admin.register(subparsers)
    submit.register(subparsers)
    work.register(subparsers)
    top.register(subparsers)
    return parser


def exit_status(error: GearworksError) -> int:
    """The exit status for an error (documented in ``gearworks --help``)."""
    for kind, status in _EXIT_CODES:
        if isinstance(error, kind):
            return status
    return EXIT_JOB_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status: int = handler(args)
    except GearworksError as exc:
        print(f"gearworks {args.command}: {exc}", file=sys.stderr)
        return exit_status(exc)
    except ValueError as exc:
        print(f"gearworks {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return status


if __name__ == "__main__":
    sys.exit(main())
