"""The docs' generated pages: every ``gearworks serve`` option is in the options table, every example on the
examples page."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from gearworks.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_table_lists_every_serve_option() -> None:
    table = hooks().serve_options_table()
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert isinstance(choices, dict)
    parser = choices["serve"]
    options = [option for action in parser._actions for option in action.option_strings]
    assert len(options) > 30
    for option in options:
        if option not in ("-h", "--help"):
            assert f"`{option}`" in table
    assert "| `-j`, `--job-retries` | `job-retries` | `JOB_RETRIES` | `0` |" in table


def test_server_page_carries_the_marker() -> None:
    assert hooks().SERVE_MARKER in (ROOT / "docs" / "server.md").read_text()


def test_examples_page_shows_every_script() -> None:
    module = hooks()
    page = module.on_page_markdown((ROOT / "docs" / "examples.md").read_text())
    for script in (ROOT / "examples").glob("*.py"):
        assert f"## {script.stem}\n" in page
        assert f'??? example "{script.name}"' in page
    assert module.EXAMPLES_MARKER not in page
