"""Every subcommand has --help with examples, and the top level lists them all."""

from __future__ import annotations

import pytest

from gearworks.cli.main import build_parser, main

SUBCOMMANDS = ["serve", "demo", "submit", "work", "admin", "top"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_shows_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out
    assert f"gearworks {command}" in out


def test_top_level_lists_every_subcommand() -> None:
    text = build_parser().format_help()
    for command in SUBCOMMANDS:
        assert command in text


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
