"""Start and stop real job-server processes for tests and benchmarks: free loopback ports, readiness with a
deadline, and a stop that always reaps the process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

GEARMAND = "/usr/sbin/gearmand"
"""The C gearmand from Debian's gearman-job-server (the Perl server is /usr/bin/gearmand)."""
PERL_GEARMAND = "/usr/bin/gearmand"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on host:port, or raise TimeoutError (or RuntimeError if proc died)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.02)


@dataclass
class ServerProcess:
    """A job server running as a child process on 127.0.0.1."""

    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", self.port, timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would; the port is free again afterwards."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the process and reap it (SIGKILL after timeout); returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _server(argv_for_port: Sequence[str], port: int | None, name: str) -> ServerProcess:
    port = port or free_port()
    tmp = tempfile.TemporaryDirectory(prefix=f"{name}-")
    argv = [arg.format(port=port, tmp=tmp.name) for arg in argv_for_port]
    return ServerProcess(argv, port, Path(tmp.name) / "server.log", _tmp=tmp)


def gearmand_process(*options: str, port: int | None = None) -> ServerProcess:
    """The C gearmand on 127.0.0.1 (not started yet); options are extra gearmand flags."""
    argv = [GEARMAND, "-L", "127.0.0.1", "-p", "{port}", "-l", "stderr", "--verbose", "INFO", *options]
    return _server(argv, port, "gearmand")


def gearworks_process(*options: str, port: int | None = None) -> ServerProcess:
    """gearworks' own server, ``gearworks serve``, on 127.0.0.1 (not started yet)."""
    argv = [sys.executable, "-m", "gearworks.cli.main", "serve", "-L", "127.0.0.1", "-p", "{port}", *options]
    return _server(argv, port, "gearworks")


def perl_gearmand_process(*options: str, port: int | None = None) -> ServerProcess:
    """The Perl Gearman::Server (Debian gearman-server), on 127.0.0.1 (not started yet)."""
    argv = ["perl", PERL_GEARMAND, "--port", "{port}", *options]
    return _server(argv, port, "perl-gearmand")


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start server, yield it, and always stop it."""
    try:
        yield server.start()
    finally:
        server.close()


def have(binary: str) -> bool:
    """Whether an executable (absolute path or PATH name) is present."""
    return os.access(binary, os.X_OK) if os.path.isabs(binary) else shutil.which(binary) is not None
