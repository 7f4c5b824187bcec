"""A real ``gearworks serve --config FILE`` process takes its listener, handle prefix and queue from the file."""

from __future__ import annotations

import sys
from pathlib import Path

from gearworks import Client
from tests.servers import ServerProcess, free_port, running


def test_server_started_with_config_file_uses_its_options(tmp_path: Path) -> None:
    port = free_port()
    queue = tmp_path / "queue.db"
    config = tmp_path / "gearworks.toml"
    config.write_text(f'listen = "127.0.0.1"\nport = {port}\njob-handle-prefix = "cfg"\nqueue = "sqlite://{queue}"\n')
    argv = [sys.executable, "-m", "gearworks.cli.main", "serve", "--config", str(config)]
    with running(ServerProcess(argv, port, tmp_path / "server.log")), Client(f"127.0.0.1:{port}") as client:
        handle = client.submit_background("nobody-serves-this", "stays queued")
    assert handle.startswith(b"cfg:")
    assert queue.stat().st_size > 0
