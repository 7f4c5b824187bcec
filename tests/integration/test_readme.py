"""The README's Python examples run, as written, against gearworks' server: worker examples in the background,
every other example to completion with the output its comments promise."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from gearworks.admin import Admin
from tests.servers import ServerProcess, gearworks_process, running

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run_example(code: str, server: ServerProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code.replace("localhost:4730", server.address)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_readme_examples_run() -> None:
    blocks = examples()
    workers = [code for code in blocks if ".work()" in code]
    others = [code for code in blocks if ".work()" not in code]
    assert len(workers) == 2
    assert len(others) >= 4
    with running(gearworks_process()) as server:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", code.replace("localhost:4730", server.address)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for code in workers
        ]
        try:
            deadline = time.monotonic() + 20
            with Admin(server.address) as admin:
                while {b"reverse", b"resize"} - {row.function for row in admin.status() if row.workers}:
                    assert time.monotonic() < deadline, "README workers did not register"
                    time.sleep(0.05)
            for code in others:
                result = run_example(code, server)
                assert result.returncode == 0, f"{code}\n{result.stderr}"
                for promised in re.findall(r"# (b'[^']*'|\d+)\s*$", code, flags=re.MULTILINE):
                    assert promised in result.stdout, f"{code}\nexpected {promised} in {result.stdout!r}"
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                _, stderr = process.communicate(timeout=30)
                assert process.returncode == 0, stderr
