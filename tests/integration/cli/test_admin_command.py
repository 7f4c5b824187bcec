"""``gearworks admin`` as a subprocess against C gearmand and gearworks' own server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from gearworks.protocol import PacketType
from tests.conftest import ServerFactory
from tests.integration.server_wire import Wire, abandon
from tests.servers import ServerProcess, free_port


def admin(server: ServerProcess | None, *argv: str) -> subprocess.CompletedProcess[str]:
    where = ["-p", str(server.port)] if server else []
    return subprocess.run(
        [sys.executable, "-m", "gearworks.cli.main", "admin", *argv, *where],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_status_table_and_json_after_create_function(server: ServerProcess) -> None:
    assert admin(server, "create-function", "resize").stdout == "OK\n"
    table = admin(server, "status")
    assert table.returncode == 0
    assert table.stdout.splitlines() == ["FUNCTION  TOTAL  RUNNING  WORKERS", "resize    0      0        0"]
    rows = json.loads(admin(server, "--status", "--json").stdout)
    assert rows == [{"function": "resize", "total": 0, "running": 0, "workers": 0, "queued": 0}]


def test_gearadmin_flag_spellings(server: ServerProcess) -> None:
    assert admin(server, "--server-version").stdout.strip().startswith("1.1.20")
    assert admin(server, "--getpid").stdout.strip().isdigit()
    workers = admin(server, "--workers").stdout.splitlines()
    assert workers[0].split() == ["FD", "ADDRESS", "CLIENT_ID", "FUNCTIONS"]
    assert admin(server, "--create-function", "made").returncode == 0
    assert "made" in admin(server, "--status").stdout


def test_dead_letter_actions_on_gearworks_server(gearworks_server_factory: ServerFactory) -> None:
    server = gearworks_server_factory("-j", "1", "--job-handle-prefix", "dl")
    with Wire(server.port) as client:
        for unique in (b"a", b"b"):
            assert client.request(PacketType.SUBMIT_JOB_BG, b"cli-dead", unique, b"x").type is PacketType.JOB_CREATED
            abandon(server.port, b"cli-dead")
    deadline = time.monotonic() + 5  # the server sees the last worker's disconnect a moment after it
    while "dl:2" not in admin(server, "dead-letters").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert admin(server, "dead-letters").stdout.splitlines() == [
        "HANDLE  FUNCTION  UNIQUE  RETRIES",
        "dl:1    cli-dead  a       1",
        "dl:2    cli-dead  b       1",
    ]
    assert json.loads(admin(server, "dead-letters", "--json").stdout)[0] == {
        "handle": "dl:1",
        "function": "cli-dead",
        "unique": "a",
        "retries": 1,
    }
    assert admin(server, "requeue-dead", "dl:1").stdout == "OK 1\n"
    assert "UNKNOWN_JOB" in admin(server, "purge-dead", "dl:1").stderr
    assert admin(server, "purge-dead").stdout == "OK 1\n"
    assert admin(server, "dead-letters").stdout == "(none)\n"
    assert admin(server, "requeue-dead", "a", "b").returncode == 2


def test_stats_table_and_json_on_gearworks_server(gearworks_server: ServerProcess) -> None:
    with Wire(gearworks_server.port) as client:
        assert client.request(PacketType.SUBMIT_JOB_HIGH_BG, b"cli-st", b"", b"abc").type is PacketType.JOB_CREATED
    table = admin(gearworks_server, "stats").stdout.splitlines()
    assert table[0].split()[:5] == ["FUNCTION", "QUEUED", "RUNNING", "WORKERS", "SUBMITTED_FOREGROUND"]
    assert table[1].split()[:4] == ["cli-st", "1", "0", "0"]
    (row,) = json.loads(admin(gearworks_server, "stats", "cli-st", "--json").stdout)
    assert (row["function"], row["submitted"], row["submitted_background"], row["bytes_in"]) == (
        "cli-st",
        1,
        [1, 0, 0],
        3,
    )
    assert row["wait_p99"] is None


def test_server_refusal_is_one_line_with_exit_status_4(server: ServerProcess) -> None:
    result = admin(server, "cancel-job", "H:nowhere:1")
    assert result.returncode == 4
    assert result.stderr.count("\n") == 1
    assert "UNKNOWN_JOB" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2() -> None:
    result = admin(None, "maxqueue", "-p", "1")
    assert result.returncode == 2
    assert "maxqueue FUNCTION" in result.stderr


def test_unreachable_server_exits_3_naming_it() -> None:
    port = free_port()
    result = admin(None, "status", "--servers", f"127.0.0.1:{port}")
    assert result.returncode == 3
    assert f"cannot connect to 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_servers_come_from_the_environment(gearmand: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gearworks.cli.main", "admin", "version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"GEARMAN_SERVERS": f"127.0.0.1:{gearmand.port}", "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == "1.1.20+ds"
