"""Entry point of the ``gearworks`` command: builds the argument parser from the subcommand modules and runs one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gearworks import __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="gearworks",
        description="Gearman job server, clients, workers and admin tools.",
    )
    parser.add_argument("--version", action="version", version=f"gearworks {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    status: int = handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
