"""MkDocs hooks: pages built from the code, so they cannot drift from it.

``<!-- gearworks:serve-options -->`` becomes a table of every ``gearworks serve`` option, read from the argparse
parser the command itself uses; ``<!-- gearworks:examples -->`` becomes one section per script in examples/,
with its docstring and its source.
"""

from __future__ import annotations

import argparse
import ast
import html
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVE_MARKER = "<!-- gearworks:serve-options -->"
EXAMPLES_MARKER = "<!-- gearworks:examples -->"


def serve_parser() -> argparse.ArgumentParser:
    """The ``serve`` subcommand's parser, as ``gearworks serve`` builds it."""
    from gearworks.cli.main import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            parser: argparse.ArgumentParser = action.choices["serve"]
            return parser
    raise LookupError("gearworks has no serve subcommand")


def _cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
        return ""
    return f"`{action.default}`"


def serve_options_table() -> str:
    """A Markdown table: each option's spellings, its ``--config`` key, argument, default and help."""
    rows = ["| option | config key | argument | default | what it does |", "|---|---|---|---|---|"]
    for action in serve_parser()._actions:
        if action.dest == "help" or not action.option_strings:
            continue
        spellings = ", ".join(f"`{option}`" for option in action.option_strings)
        long = next((option[2:] for option in action.option_strings if option.startswith("--")), "")
        key = "" if long == "config" else f"`{long}`"
        argument = "" if action.nargs == 0 else f"`{action.metavar or action.dest.upper()}`"
        rows.append(f"| {spellings} | {key} | {argument} | {_default(action)} | {_cell(action.help or '')} |")
    return "\n".join(rows)


def examples_sections() -> str:
    """One section per example script: its name, its docstring, its source."""
    sections = []
    for path in sorted((ROOT / "examples").glob("*.py")):
        source = path.read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        summary, _, usage = doc.partition("\n\n")
        sections.append(
            f"## {path.stem}\n\n{summary}\n\n```sh\n{usage.strip()}\n```\n\n"
            f'??? example "{path.name}"\n\n    ```python\n'
            + "".join(f"    {line}".rstrip() + "\n" for line in source.splitlines())
            + "    ```\n"
        )
    return "\n".join(sections)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Fill in the generated parts of a page."""
    if SERVE_MARKER in markdown:
        markdown = markdown.replace(SERVE_MARKER, serve_options_table())
    if EXAMPLES_MARKER in markdown:
        markdown = markdown.replace(EXAMPLES_MARKER, examples_sections())
    return markdown
