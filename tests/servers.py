"""Start and stop real job-server processes for tests and benchmarks: each binds port 0 and the port it got is read
back from the kernel (no pick-then-bind race), readiness with a deadline, and a stop that always reaps the process."""

from __future__ import annotations

import contextlib
import os
import re
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


def listening_ports(pid: int) -> list[int]:
    """The TCP ports process ``pid`` listens on, from /proc (its socket inodes matched in /proc/net/tcp{,6})."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB, from /proc.

    Raises:
        ProcessLookupError: the process is gone (a benchmark sampling a server that may crash catches it).
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    raise ProcessLookupError(f"no process {pid}")


def open_fds(pid: int) -> int:
    """Open file descriptors of process ``pid``, from /proc (0 once it is gone)."""
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


def wait_for_listen(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """Block until ``proc`` listens on a TCP port and return it (RuntimeError if it exits, TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        ports = listening_ports(proc.pid)
        if ports:
            return ports[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"server pid {proc.pid} not listening after {timeout}s")
        time.sleep(0.02)


def wait_for_path(path: Path, timeout: float = 10.0) -> None:
    """Block until ``path`` exists (a server's Unix socket), or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)


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

    argv_template: list[str]
    """The command line, with ``{port}`` where the port goes: 0 on the first start, the port it got after."""
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

    @property
    def argv(self) -> list[str]:
        return [arg.replace("{port}", str(self.port)) for arg in self.argv_template]

    def start(self, timeout: float = 15.0) -> ServerProcess:
        """Start the process; on its first start it binds port 0 and ``port`` becomes the port it got."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            if self.port:
                wait_for_port("127.0.0.1", self.port, timeout, self.proc)
            else:
                self.port = wait_for_listen(self.proc, timeout)
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

    def announced(self, scheme: str, timeout: float = 10.0) -> int:
        """The port of gearworks' ``listening on SCHEME://127.0.0.1:PORT`` log line (``tcp``, ``http``, ``https``):
        with an HTTP listener too, the first port seen listening may not be the job port."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(rf"listening on {scheme}://127\.0\.0\.1:(\d+)", self.log())
            if found:
                return int(found.group(1))
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {scheme} listening line in {self.log()!r}")
            time.sleep(0.02)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _server(argv_for_port: Sequence[str], port: int | None, name: str) -> ServerProcess:
    tmp = tempfile.TemporaryDirectory(prefix=f"{name}-")
    argv = [arg.replace("{tmp}", tmp.name) for arg in argv_for_port]
    return ServerProcess(argv, port or 0, Path(tmp.name) / "server.log", _tmp=tmp)


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
