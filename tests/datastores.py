"""Start real Redis and PostgreSQL servers for the durable-queue tests and benchmarks: private data directories,
free loopback ports, readiness with a deadline, and a stop that always reaps the process."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import ServerProcess, free_port, wait_for_port

REDIS_SERVER = "/usr/bin/redis-server"


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL binaries directory (``/usr/lib/postgresql/N/bin``), newest first, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(found[0]).parent if found else None


def redis_process(*options: str, port: int | None = None) -> ServerProcess:
    """A private redis-server on 127.0.0.1 with its data in a temporary directory (not started yet).

    ``appendonly yes`` with ``appendfsync always`` by default, so a test can rely on every acknowledged write.
    """
    port = port or free_port()
    tmp = tempfile.TemporaryDirectory(prefix="redis-")
    argv = [
        REDIS_SERVER,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        tmp.name,
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        *options,
    ]
    return ServerProcess(argv, port, Path(tmp.name) / "server.log", _tmp=tmp)


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster in a temporary directory: started, stopped (``pg_ctl stop -m MODE``, as an
    operator or a crash would) and started again on the same port with the same data."""

    ctl: list[str]
    options: str
    port: int
    data: str
    cwd: str
    user: int | None
    """The uid (and gid) PostgreSQL runs as: ``postgres`` when we are root, as it requires; None: ours."""
    group: int | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """Start the cluster; returns its connection URL once it accepts connections."""
        self._ctl("-o", self.options, "start")
        wait_for_port("127.0.0.1", self.port, 30)
        return self.url

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``: ``fast`` disconnects every session, ``immediate`` is a crash."""
        self._ctl("-m", mode, "stop", check=False)

    def postmaster_pid(self) -> int:
        """The postmaster's process id (first line of ``postmaster.pid``)."""
        return int(Path(self.data, "postmaster.pid").read_text().split()[0])

    def _ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self.ctl, *args], check=check, capture_output=True, cwd=self.cwd, user=self.user, group=self.group
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster (initdb in a temporary directory, run as the ``postgres`` user when we are
    root, as PostgreSQL requires), not started yet; always stopped and removed afterwards."""
    bindir = postgres_bin()
    if bindir is None:
        raise FileNotFoundError("initdb not found (Debian package postgresql)")
    tmp = tempfile.mkdtemp(prefix="pg-")
    data = os.path.join(tmp, "data")
    port = free_port()
    uid = gid = None
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(tmp, user.pw_uid, user.pw_gid)
        uid, gid = user.pw_uid, user.pw_gid
    subprocess.run(
        [str(bindir / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
        check=True,
        capture_output=True,
        cwd=tmp,
        user=uid,
        group=gid,
    )
    log = os.path.join(tmp, "server.log")
    ctl = [str(bindir / "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "30"]
    options = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=on"
    cluster = PostgresCluster(ctl, options, port, data, tmp, uid, gid)
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Callable[[], str]]:
    """``postgres_server()`` for callers that only start it: yields its ``start``."""
    with postgres_server() as cluster:
        yield cluster.start
