"""The job server process: listeners (TCP, Unix socket, TLS), signals, pid file and the event loop.

Builds the board, admin commands, connection hub and (with ``--http-port``) the HTTP listener from a
``ServerConfig`` and runs them until SIGTERM/SIGINT, an admin ``shutdown``, or (SIGUSR1, ``shutdown graceful``)
until the last job is done. Uses uvloop when installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gearworks._version import __version__
from gearworks.errors import QueueError
from gearworks.protocol.codec import DEFAULT_MAX_PACKET_SIZE
from gearworks.server.admin import AdminAction, AdminCommands, Network
from gearworks.server.board import Board
from gearworks.server.cluster import Cluster, ClusterBoard, ClusterOptions
from gearworks.server.connections import Hub, SocketOptions
from gearworks.server.heap import collect_rarely, keep_large_buffers
from gearworks.server.http import HttpServer
from gearworks.server.jobs import HandleFactory
from gearworks.server.limits import ANNOUNCE, Limits, raise_open_files_limit
from gearworks.server.queues.base import QueueStore
from gearworks.server.queues.memory import MemoryStore

__all__ = ["VERSION", "JobServer", "ServerConfig", "run"]

log = logging.getLogger("gearworks.server")

VERSION = f"1.1.20+gearworks.{__version__}"
"""What admin ``version`` prints: the gearmand release whose behaviour is reproduced, then ours."""
SHUTDOWN_WAIT = 2.0
"""Seconds a stopping server waits for the durable queue's last write: a hung store must not hold SIGTERM."""

# gearmand's default certificate files and the environment variables overriding them (PROTOCOL.md §1.6).
_TLS_DEFAULTS = {
    "certificate": ("GEARMAND_SERVER_PEM", "/etc/ssl/certs/gearmand.pem"),
    "key": ("GEARMAND_SERVER_KEY", "/etc/ssl/certs/gearmand.key"),
    "ca_file": ("GEARMAND_CA_CERTIFICATE", "/etc/ssl/certs/gearmand-ca.pem"),
}


@dataclass(slots=True)
class ServerConfig:
    """Everything ``gearworks serve`` can be told; defaults match gearmand's where it has one."""

    host: str | None = None
    port: int = 4730
    unix_socket: str | None = None
    backlog: int = 1024
    job_retries: int = 0
    round_robin: bool = False
    worker_wakeup: int = 0
    exceptions: bool = False
    job_handle_prefix: bytes | None = None
    job_handle_start: int = 1
    keepalive: bool = False
    keepalive_idle: int = -1
    keepalive_interval: int = -1
    keepalive_count: int = -1
    ssl: bool = False
    ssl_certificate: str | None = None
    ssl_key: str | None = None
    ssl_ca_file: str | None = None
    pid_file: str | None = None
    verbose: str = "ERROR"
    queue_type: str = "memory"
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    allow_remote_shutdown: bool = False
    admin_allow: tuple[Network, ...] | None = None
    """Networks whose peers may run state-changing admin commands; None: loopback (and Unix-socket) peers."""
    http_port: int | None = None
    """``--http-port``: metrics, JSON API and dashboard on this port (None: no HTTP; 0: a free port, logged)."""
    http_listen: str = "127.0.0.1"
    http_token: str | None = None
    """``--http-token``: a peer that is not loopback may make changes (requeue, purge, cancel) with it."""
    store: QueueStore = field(default_factory=MemoryStore)
    limits: Limits = field(default_factory=Limits)
    cluster: ClusterOptions | None = None
    """Cluster mode: ``store`` is ``cluster.store``, shared with the other nodes."""


def tls_context(config: ServerConfig) -> ssl.SSLContext:
    """The server-side TLS context: certificate and key, and client-certificate checks when a CA file is given.

    Raises:
        ValueError: the certificate or key file is missing.
    """

    def pick(name: str, given: str | None) -> str | None:
        env, default = _TLS_DEFAULTS[name]
        path = given or os.environ.get(env) or default
        return path if given or os.path.exists(path) else None

    certificate = pick("certificate", config.ssl_certificate)
    key = pick("key", config.ssl_key)
    if certificate is None or key is None:
        raise ValueError("--ssl needs --ssl-certificate and --ssl-key (gearmand's default files do not exist)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    ca_file = pick("ca_file", config.ssl_ca_file)
    if ca_file is not None:
        context.load_verify_locations(ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class JobServer:
    """One job server: a board shared by every listener's connections."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        board_type = Board if config.cluster is None else ClusterBoard
        self.board = board_type(
            handles=HandleFactory(config.job_handle_prefix, config.job_handle_start),
            store=config.store,
            job_retries=config.job_retries,
            round_robin=config.round_robin,
            worker_wakeup=config.worker_wakeup,
            exceptions=config.exceptions,
            max_queued_bytes=config.limits.max_queued_bytes,
        )
        admin = AdminCommands(
            self.board,
            version=VERSION.encode(),
            verbose=config.verbose,
            allow_remote_shutdown=config.allow_remote_shutdown,
            admin_allow=config.admin_allow,
        )
        socket_options = SocketOptions()
        if config.keepalive:
            socket_options = SocketOptions(config.keepalive_idle, config.keepalive_interval, config.keepalive_count)
        self.hub = Hub(
            self.board,
            admin,
            on_action=self._on_admin_action,
            max_packet_size=config.max_packet_size,
            socket_options=socket_options,
            limits=config.limits,
        )
        self.cluster: Cluster | None = None
        if config.cluster is not None:
            assert isinstance(self.board, ClusterBoard)
            self.cluster = Cluster(config.cluster, self.board)
            self.cluster.attach(self.hub, admin)
        self.listeners: list[asyncio.AbstractServer] = []
        self.addresses: list[str] = []
        self.http: HttpServer | None = None
        self._stopped: asyncio.Event | None = None

    async def start(self) -> list[str]:
        """Open every listener; returns the addresses listened on (``host:port`` or a socket path)."""
        self._stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        config = self.config
        if self.cluster is not None:
            self.cluster.start()  # the lease first: no peer adopts what is being loaded
        restored = self.board.restore(config.store.load(), time.time(), config.store.load_dead())
        if restored:
            log.info("restored %d background jobs from the %s queue", restored, config.queue_type)
        if self.board.dead:
            log.info("%d dead letters in the %s queue", len(self.board.dead), config.queue_type)
        self.hub.schedule_timer()  # restored epoch jobs come due with no connection to start the timer
        if self.hub.commit is not None:
            self.hub.commit.start()  # the store belongs to the writer thread from here on
        context = tls_context(config) if config.ssl else None
        if config.port >= 0:
            host = config.host or None
            if host is None and config.port == 0:
                host = "0.0.0.0"  # one ephemeral port for every family would need one bind per family
            server = await loop.create_server(
                self.hub.connection, host, config.port, backlog=config.backlog, reuse_address=True, ssl=context
            )
            self.listeners.append(server)
            if self.cluster is not None and server.sockets:
                self.cluster.listening(server.sockets[0].getsockname()[1])  # -p 0: the lease shows the bound port
            scheme = "tls" if context else "tcp"
            for sock in server.sockets:
                name = sock.getsockname()
                self.addresses.append(f"{scheme}://{_join_host_port(name[0], name[1])}")
        if config.unix_socket:
            _remove_stale_socket(config.unix_socket)
            server = await loop.create_unix_server(self.hub.connection, config.unix_socket, backlog=config.backlog)
            self.listeners.append(server)
            self.addresses.append(f"unix://{config.unix_socket}")
        if config.http_port is not None:
            self.http = HttpServer(self.hub, config.http_token)
            self.addresses += await self.http.start(config.http_listen, config.http_port, context)
        for address in self.addresses:
            log.info("gearworks %s listening on %s", __version__, address, extra=ANNOUNCE)
        return self.addresses

    def stop(self) -> None:
        """Stop now (SIGTERM, SIGINT, admin ``shutdown``): queued jobs are not waited for."""
        if self._stopped is not None:
            self._stopped.set()

    def stop_gracefully(self) -> None:
        """Stop accepting connections and exit once no job is left (SIGUSR1, ``shutdown graceful``)."""
        log.info("graceful shutdown: waiting for %d jobs", len(self.board.jobs), extra=ANNOUNCE)
        for listener in self.listeners:
            listener.close()
        if self.http is not None:
            self.http.close()
        self.hub.on_idle = self.stop
        if not self.board.jobs:
            self.stop()

    def _on_admin_action(self, action: AdminAction) -> None:
        if action is AdminAction.GRACEFUL:
            self.stop_gracefully()
        else:
            log.info("shutdown requested by an admin", extra=ANNOUNCE)
            self.stop()

    async def serve(self) -> None:
        """Run until stopped, then close listeners, connections and the store."""
        if self._stopped is None:
            await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Close listeners and connections, remove the Unix socket file, close the store (waiting at most
        ``SHUTDOWN_WAIT`` seconds for its last write)."""
        for listener in self.listeners:
            listener.close()
        if self.http is not None:
            self.http.close()
        self.hub.close()
        self.listeners = []
        if self.config.unix_socket:
            _remove_stale_socket(self.config.unix_socket)
        if self.cluster is not None:
            self.cluster.close()
        commit = self.hub.commit
        if commit is not None:
            await commit.close(SHUTDOWN_WAIT)  # what is staged or being written reaches the store, if it answers
        else:
            self.config.store.close()


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file left by an earlier run (never a regular file)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _main(config: ServerConfig) -> int:
    server = JobServer(config)
    try:
        await server.start()
    except (OSError, ValueError, ssl.SSLError, QueueError) as exc:
        log.error("cannot start: %s", exc, extra=ANNOUNCE)
        await server.close()
        return 1
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    loop.add_signal_handler(signal.SIGUSR1, server.stop_gracefully)
    # The log file handler reopens a rotated file by itself; SIGHUP must only not kill the server.
    loop.add_signal_handler(signal.SIGHUP, lambda: log.info("SIGHUP: log file reopened when rotated"))
    pid_file = Path(config.pid_file) if config.pid_file else None
    if pid_file is not None:
        pid_file.write_text(f"{os.getpid()}\n")
    try:
        await server.serve()
    finally:
        if pid_file is not None:
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()
    log.info("stopped", extra=ANNOUNCE)
    return 0


def run(config: ServerConfig) -> int:
    """Run a job server in this process until it is stopped; returns the exit status."""
    keep_large_buffers()
    collect_rarely()
    raise_open_files_limit()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_main(config))
