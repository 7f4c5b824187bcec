"""``gearworks top`` driven in a real terminal (tmux): it shows a queued function live and quits on q."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

from gearworks.protocol import PacketType, encode
from tests.servers import ServerProcess


def tmux(*argv: str) -> str:
    return subprocess.run(["tmux", *argv], capture_output=True, text=True, timeout=10, check=True).stdout


def wait_for_screen(session: str, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if text in screen or time.monotonic() > deadline:
            return screen
        time.sleep(0.1)


def test_top_shows_a_queued_function_and_quits_on_q(gearmand: ServerProcess) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed (Debian package tmux)")
    with socket.create_connection(("127.0.0.1", gearmand.port), timeout=5) as sock:
        sock.sendall(b"".join(encode(PacketType.SUBMIT_JOB_BG, [b"thumbnail", b"", b"x"]) for _ in range(3)))
        time.sleep(0.2)
    session = f"gwtop-{uuid.uuid4().hex[:8]}"
    # The view is as wide as the 120-column tmux window: a COLUMNS inherited from the test's environment would win.
    top = f"{sys.executable} -m gearworks.cli.main top -p {gearmand.port} --interval 0.2"
    command = f"env -u COLUMNS -u LINES {top}; sleep 30"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "30", command)
    try:
        screen = wait_for_screen(session, "thumbnail")
        line = next(line for line in screen.splitlines() if "thumbnail" in line)
        assert line.split("│")[3].strip() == "3"  # QUEUED column
        assert f"127.0.0.1:{gearmand.port}" in line
        time.sleep(0.5)
        assert "gearworks top" in tmux("capture-pane", "-p", "-t", session)  # still running until q
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 10
        while "gearworks top" in tmux("capture-pane", "-p", "-t", session) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "gearworks top" not in tmux("capture-pane", "-p", "-t", session)  # left the screen: it quit
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)
