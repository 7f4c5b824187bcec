"""``gearworks serve --config FILE``: a TOML file of long option names, the command line overriding it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gearworks.cli.main import build_parser

CONFIG = """\
listen = "127.0.0.1"
port = 4999
queue = "sqlite:///var/lib/gearworks/queue.db"
job-retries = 3
round-robin = true
verbose = "info"
job_handle_prefix = "farm"
"""


def parse(*argv: str) -> dict[str, object]:
    return vars(build_parser().parse_args(["serve", *argv]))


def test_config_file_sets_options_by_their_long_names(tmp_path: Path) -> None:
    config = tmp_path / "gearworks.toml"
    config.write_text(CONFIG)
    args = parse("--config", str(config))
    assert args["listen"] == "127.0.0.1"
    assert args["port"] == 4999
    assert args["queue"] == "sqlite:///var/lib/gearworks/queue.db"
    assert args["job_retries"] == 3
    assert args["round_robin"] is True
    assert args["verbose"] == "INFO"  # converted as on the command line
    assert args["job_handle_prefix"] == "farm"
    assert args["backlog"] == 1024  # not in the file: the usual default


def test_command_line_flags_win_before_or_after_config(tmp_path: Path) -> None:
    config = tmp_path / "gearworks.toml"
    config.write_text(CONFIG)
    args = parse("-p", "5000", "--config", str(config), "-j", "7")
    assert args["port"] == 5000
    assert args["job_retries"] == 7
    assert args["listen"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("colour = 1\n", "unknown option 'colour'"),
        ("config = 'other.toml'\n", "unknown option 'config'"),
        ("ssl = 'yes'\n", "ssl must be true or false"),
        ("port = 'many'\n", "port: invalid literal"),
        ("port = true\n", "port must be a string or a number"),
        ("verbose = 'LOUD'\n", "unknown level"),
        ("port = \n", "Invalid value"),
    ],
)
def test_bad_config_file_is_a_usage_error_naming_the_key(
    tmp_path: Path, text: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        parse("--config", str(config))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--config {config}" in err
    assert complaint in err


def test_missing_config_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--config", str(tmp_path / "absent.toml"))
    assert "No such file" in capsys.readouterr().err
