"""``gearworks demo`` runs a whole farm, exits 0 with a one-line summary, and leaves nothing running."""

from __future__ import annotations

import re
import socket
import subprocess
import sys


def test_demo_completes_every_job_and_leaves_nothing_behind() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gearworks.cli.main", "demo", "--jobs", "200", "--slow", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    match = re.match(r"demo: (\d+) jobs done, 0 failed in [\d.]+ s .* on 127\.0\.0\.1:(\d+), 2 workers", summary)
    assert match, summary
    assert int(match.group(1)) == 203
    for name in ("reverse", "wordcount", "resize"):
        assert re.search(rf"{name}\s+│\s+\d+\s+│\s+\d+\s+│\s+0", result.stdout), name
    # The embedded server is gone: its port refuses connections.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(match.group(2)))) != 0
