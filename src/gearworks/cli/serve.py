"""``gearworks serve``: run the job server with gearmand's option spellings (PROTOCOL.md §8)."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import re
import socket
import sys
import time
import tomllib
from collections.abc import Sequence
from typing import Any

from gearworks.errors import QueueError
from gearworks.server.admin import VERBOSE_LEVELS, parse_networks
from gearworks.server.app import ServerConfig, run
from gearworks.server.cluster import ClusterOptions
from gearworks.server.jobs import MAX_HANDLE_PREFIX
from gearworks.server.limits import Limits
from gearworks.server.queues.base import Membership, QueueStore, node_id
from gearworks.server.queues.urls import open_shared_store, open_store, store_kind

__all__ = ["register"]

EXAMPLES = """examples:
  gearworks serve                                   all interfaces, port 4730, jobs in memory
  gearworks serve -L 127.0.0.1 -p 0                 loopback, a free port (logged at start)
  gearworks serve --unix-socket /run/gearman.sock --verbose INFO -l gearworks.log -P gearworks.pid
  gearworks serve --ssl --ssl-certificate server.pem --ssl-key server.key --ssl-ca-file ca.pem
  gearworks serve --config /etc/gearworks/gearworks.toml -p 4731     a TOML file, the flag overriding it
  gearworks serve --http-port 8080                  and the dashboard on http://127.0.0.1:8080/, metrics at /metrics
  gearman -h 127.0.0.1 -f rev hello; gearadmin -h 127.0.0.1 --status   the C tools work against it
"""

NOTICE = 25
"""gearmand's NOTICE level sits between INFO and WARNING."""
_LEVELS = {
    "FATAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "NOTICE": NOTICE,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}


def _verbose(value: str) -> str:
    level = value.upper()
    if level not in VERBOSE_LEVELS:
        raise argparse.ArgumentTypeError(f"unknown level {value!r} (one of {', '.join(VERBOSE_LEVELS)})")
    return level


_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}


def parse_size(value: str) -> int:
    """A byte count: ``4194304``, ``4MiB``, ``512k``, ``1G`` (powers of 1024)."""
    text = value.strip().lower()
    digits = text.rstrip("kmgib")
    unit = text[len(digits) :]
    if not digits.isdigit() or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {value!r} (e.g. 4194304, 512KiB, 4MiB, 1GiB)")
    return int(digits) * _UNITS[unit]


def _queue_url(args: argparse.Namespace) -> tuple[str, str | None]:
    """The queue URL ``-q`` names (a libpq conninfo string for gearmand's ``Postgres``) and the namespace option
    given for its kind (``--libsqlite3-table``, ``--redis-prefix``, ``--libpq-table``).

    Raises:
        ValueError: an unknown queue or a missing option.
    """
    name = args.queue.lower()
    if name in ("postgres", "libpq"):
        return args.libpq_conninfo, args.libpq_table
    url = args.queue
    if name == "libsqlite3":
        if not args.libsqlite3_db:
            raise ValueError("-q libsqlite3 needs --libsqlite3-db FILE")
        url = "sqlite:" + os.path.abspath(args.libsqlite3_db)
    elif name == "redis":
        url = f"redis://{args.redis_server}:{args.redis_port}/0"
    namespace = {"sqlite": args.libsqlite3_table, "redis": args.redis_prefix, "postgres": args.libpq_table}
    return url, namespace.get(store_kind(url))


def queue_store(args: argparse.Namespace) -> QueueStore:
    """The store ``-q`` names: a URL, or gearmand's queue names with their options (PROTOCOL.md §8), claimed for
    this server (``--libsqlite3-table``, ``--redis-prefix``, ``--libpq-table`` pick the namespace).

    Raises:
        ValueError: an unknown queue or a missing option.
        QueueError: the backend cannot be opened, or another live server owns it.
    """
    url, namespace = _queue_url(args)
    if args.queue.lower() in ("postgres", "libpq"):  # a libpq conninfo string, not a URL
        from gearworks.server.queues.postgres import PostgresStore

        table = {"table": namespace} if namespace else {}
        return PostgresStore(url, timeout=args.queue_timeout, owner=node_id(), **table)
    return open_store(url, name=namespace, timeout=args.queue_timeout, owner=node_id())


def cluster_options(args: argparse.Namespace, port: int) -> ClusterOptions:
    """``--cluster NAME`` with its node id, lease timings and the shared store (not joined yet).

    Raises:
        ValueError: a bad name or timing, no node id for ``-p 0``, a store that cannot be shared.
        QueueError: the store cannot be reached, or a single server owns its namespace.
    """
    if not re.fullmatch(r"[A-Za-z0-9_]{1,40}", args.cluster):
        raise ValueError(f"--cluster {args.cluster!r}: use 1 to 40 letters, digits or underscores")
    if not 0 < args.lease_interval < args.lease_timeout:
        raise ValueError("--lease-interval must be positive and shorter than --lease-timeout")
    if args.job_handle_prefix is not None:
        raise ValueError("--job-handle-prefix cannot be used with --cluster: handles are H:<node-id>:<n>")
    host = socket.gethostname()
    if args.node_id is None and port == 0:
        raise ValueError("--cluster with -p 0 needs --node-id (the default, hostname:port, must be stable)")
    node = args.node_id or f"{host}:{port}"
    if not node or len(node) > MAX_HANDLE_PREFIX - 2 or any(ch in node for ch in "\0 \t\n"):
        raise ValueError(f"--node-id {node!r}: 1 to {MAX_HANDLE_PREFIX - 2} characters, no blanks")
    membership = Membership(args.cluster, node, f"{args.listen or host}:{port}", node_id(), args.lease_timeout)
    url, namespace = _queue_url(args)
    store = open_shared_store(url, membership, name=namespace, timeout=args.queue_timeout)
    return ClusterOptions(store, args.lease_interval)


class _ConfigFile(argparse.Action):
    """``--config FILE``: option values from a TOML table whose keys are the long option names (``port = 4730``,
    ``job-retries = 3``, ``ssl = true``). Options given on the command line win, before or after ``--config``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        path = str(values)
        try:
            with open(path, "rb") as file:
                table = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            parser.error(f"--config {path}: {exc}")
        for key, value in table.items():
            action = parser._option_string_actions.get("--" + key.replace("_", "-"))
            if action is None or action is self or action.dest == "help":
                parser.error(f"--config {path}: unknown option {key!r}")
            # A flag parsed before --config holds a value other than its default: the command line wins. (One
            # typed before --config with exactly its default value is indistinguishable, so the file wins there.)
            if getattr(namespace, action.dest, None) == action.default:
                setattr(namespace, action.dest, _config_value(parser, path, key, action, value))


def _config_value(parser: argparse.ArgumentParser, path: str, key: str, action: argparse.Action, value: Any) -> Any:
    """A TOML value checked and converted as the command line would convert the same flag."""
    if action.nargs == 0:  # store_true
        if not isinstance(value, bool):
            parser.error(f"--config {path}: {key} must be true or false")
        return value
    if isinstance(value, bool | dict | list):
        parser.error(f"--config {path}: {key} must be a string or a number")
    try:
        return action.type(str(value)) if callable(action.type) else str(value)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(f"--config {path}: {key}: {exc}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run a Gearman job server (drop-in gearmand)",
        description="Run a Gearman job server. Options keep gearmand's spellings and meanings.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--config",
        metavar="FILE",
        action=_ConfigFile,
        help="read options from a TOML file whose keys are the long option names (port = 4730, job-retries = 3, "
        "ssl = true); options on the command line win",
    )
    add("-L", "--listen", metavar="HOST", default=None, help="address to listen on (default: all interfaces)")
    add(
        "-p",
        "--port",
        type=int,
        default=None,
        help="TCP port (default 4730 or $GEARMAND_PORT; 0 picks a free port, logged at start)",
    )
    add("--unix-socket", metavar="PATH", help="also listen on this Unix socket")
    add(
        "-b",
        "--backlog",
        type=int,
        default=1024,
        help="listen backlog (default 1024: bursts of connections are not dropped)",
    )
    add("-j", "--job-retries", type=int, default=0, help="fail a job after its worker was lost N times (0: never)")
    add("-R", "--round-robin", action="store_true", help="rotate the functions a worker is served from")
    add("-w", "--worker-wakeup", type=int, default=0, help="wake at most N sleeping workers per job (0: all)")
    add("--exceptions", action="store_true", help="turn the exceptions option on for every connection")
    add("--job-handle-prefix", metavar="PREFIX", help="job handles are PREFIX:<n> (default H:<hostname>)")
    add("--keepalive", action="store_true", help="apply the --keepalive-* timings to accepted sockets")
    add("--keepalive-idle", type=int, default=-1, metavar="SECONDS")
    add("--keepalive-interval", type=int, default=-1, metavar="SECONDS")
    add("--keepalive-count", type=int, default=-1, metavar="N")
    add("--ssl", action="store_true", help="TLS on the TCP listener")
    add("--ssl-certificate", metavar="FILE", help="server certificate (PEM)")
    add("--ssl-key", metavar="FILE", help="server private key (PEM)")
    add("--ssl-ca-file", metavar="FILE", help="CA bundle: clients must present a certificate signed by it")
    add("-l", "--log-file", metavar="FILE", default="stderr", help="log file (default stderr)")
    add("--verbose", type=_verbose, default="ERROR", metavar="LEVEL", help=f"{', '.join(VERBOSE_LEVELS)}")
    add("-P", "--pid-file", metavar="FILE", help="write the process id here")
    add(
        "-q",
        "--queue",
        "--queue-type",
        dest="queue",
        default="memory",
        metavar="URL",
        help="where background jobs are kept: memory (default, gearmand's builtin), sqlite:///PATH, "
        "redis://HOST:PORT/DB, postgresql://USER@HOST:PORT/DB; or gearmand's libsqlite3, redis, Postgres "
        "with the options below",
    )
    add(
        "--queue-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="longest a durable-queue call may take (statement, lock wait, socket) before its submitters get "
        "ERROR QUEUE_ERROR (default 5)",
    )
    add("--libsqlite3-db", metavar="FILE", help="-q libsqlite3: the database file")
    add("--libsqlite3-table", metavar="TABLE", help="SQLite table of this server's jobs (default gearworks_jobs)")
    add("--redis-server", metavar="HOST", default="127.0.0.1", help="-q redis: the Redis host")
    add("--redis-port", metavar="PORT", type=int, default=6379, help="-q redis: the Redis port")
    add("--redis-prefix", metavar="PREFIX", help="Redis key prefix of this server's jobs (default gearworks)")
    add("--libpq-conninfo", metavar="CONNINFO", default="", help="-q Postgres: libpq connection string")
    add("--libpq-table", metavar="TABLE", help="PostgreSQL table of this server's jobs (default gearworks_jobs)")
    add(
        "--cluster",
        metavar="NAME",
        help="share the -q redis:// or postgresql:// store with the other servers of cluster NAME: each owns its "
        "jobs under a lease, and a live one takes over the jobs of one that died",
    )
    add("--node-id", metavar="ID", help="--cluster: this server's stable id, in its handles (default hostname:port)")
    add(
        "--lease-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="--cluster: seconds between lease renewals (default 1)",
    )
    add(
        "--lease-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="--cluster: a server that cannot renew its lease this long hands out no jobs; peers take its jobs "
        "over after twice this (default 10)",
    )
    add("-t", "--threads", type=int, default=0, help="accepted for gearmand compatibility; ignored")
    add("--allow-remote-shutdown", action="store_true", help="accept admin shutdown from non-loopback peers")
    add(
        "--admin-allow",
        nargs="+",
        action="extend",
        metavar="CIDR",
        help="peers allowed to run admin commands that change state (shutdown, maxqueue, cancel job, create/drop "
        "function, dead requeue/purge); replaces the default, loopback and Unix-socket peers "
        "(e.g. --admin-allow 127.0.0.1/32 10.1.0.0/16)",
    )
    add(
        "--http-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /metrics, the JSON API and the dashboard on this port (off by default; 0 picks a free port)",
    )
    add("--http-listen", default="127.0.0.1", metavar="HOST", help="address of the HTTP listener (default 127.0.0.1)")
    add(
        "--http-token",
        default=None,
        metavar="TOKEN",
        help="let non-loopback peers requeue, purge and cancel over HTTP with Authorization: Bearer TOKEN",
    )
    _add_limits(parser)
    parser.set_defaults(handler=serve)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    """The caps of README "Limits"; defaults from ``Limits``."""
    limits = Limits()
    group = parser.add_argument_group("limits")
    add = group.add_argument
    add(
        "--max-connections",
        type=int,
        default=limits.max_connections,
        metavar="N",
        help="refuse (and log) connections beyond N open (default: the open-files limit, raised to its hard "
        "limit at start, minus 64)",
    )
    add(
        "--max-output-bytes",
        type=parse_size,
        default=limits.max_output_bytes,
        metavar="SIZE",
        help="unread output per connection beyond which the peers producing it are not read and it is not "
        "read; at 4x it is disconnected (default 4MiB)",
    )
    add(
        "--output-timeout",
        type=float,
        default=limits.output_timeout,
        metavar="SECONDS",
        help="disconnect a connection that stays over --max-output-bytes this long (default 30)",
    )
    add(
        "--max-queued-bytes",
        type=parse_size,
        default=limits.max_queued_bytes,
        metavar="SIZE",
        help="total workload of live jobs beyond which submissions get ERROR QUEUE_ERROR (default 1GiB)",
    )
    add(
        "--idle-timeout",
        type=float,
        default=limits.idle_timeout,
        metavar="SECONDS",
        help="close connections silent this long (default 0: never, as sleeping workers are silent)",
    )
    add(
        "--packet-timeout",
        type=float,
        default=limits.packet_timeout,
        metavar="SECONDS",
        help="close a connection whose packet or admin line is not complete this long after its first byte "
        "(default 30)",
    )


class _AnnounceFilter(logging.Filter):
    """Lets through records at the chosen level, and the start/stop lines whatever the level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or bool(getattr(record, "announce", False))


def _configure_logging(log_file: str, verbose: str) -> None:
    logging.addLevelName(NOTICE, "NOTICE")
    level = _LEVELS[verbose]
    handler: logging.Handler
    if log_file in ("stderr", "-", ""):
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.handlers.WatchedFileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_AnnounceFilter(level))
    logger = logging.getLogger("gearworks")
    logger.addHandler(handler)
    logger.setLevel(min(level, logging.INFO))
    logger.propagate = False


def serve(args: argparse.Namespace) -> int:
    """Run the server until it is stopped."""
    _configure_logging(args.log_file, args.verbose)
    port = args.port
    if port is None:
        try:
            port = int(os.environ.get("GEARMAND_PORT") or 4730)
        except ValueError:
            logging.getLogger("gearworks.server").error("GEARMAND_PORT is not a port number", extra={"announce": True})
            return 2
    prefix = args.job_handle_prefix.encode() if args.job_handle_prefix is not None else None
    config = ServerConfig(
        host=args.listen,
        port=port,
        unix_socket=args.unix_socket,
        backlog=args.backlog,
        job_retries=args.job_retries,
        round_robin=args.round_robin,
        worker_wakeup=args.worker_wakeup,
        exceptions=args.exceptions,
        job_handle_prefix=prefix,
        keepalive=args.keepalive,
        keepalive_idle=args.keepalive_idle,
        keepalive_interval=args.keepalive_interval,
        keepalive_count=args.keepalive_count,
        ssl=args.ssl,
        ssl_certificate=args.ssl_certificate,
        ssl_key=args.ssl_key,
        ssl_ca_file=args.ssl_ca_file,
        pid_file=args.pid_file,
        verbose=args.verbose,
        queue_type=args.queue,
        allow_remote_shutdown=args.allow_remote_shutdown,
        limits=Limits(
            max_connections=args.max_connections,
            max_output_bytes=args.max_output_bytes,
            output_timeout=args.output_timeout,
            max_queued_bytes=args.max_queued_bytes,
            idle_timeout=args.idle_timeout,
            packet_timeout=args.packet_timeout,
        ),
        http_port=args.http_port,
        http_listen=args.http_listen,
        http_token=args.http_token,
    )
    try:
        if args.admin_allow is not None:
            config.admin_allow = parse_networks(args.admin_allow)
        if args.cluster:
            config.cluster = cluster_options(args, port)
            config.store = config.cluster.store
            config.job_handle_prefix = f"H:{config.cluster.node}".encode()
            config.job_handle_start = time.time_ns() // 1000  # above any handle an earlier run of this node made
        else:
            config.store = queue_store(args)
        return run(config)
    except (ValueError, QueueError) as exc:
        logging.getLogger("gearworks.server").error("cannot start: %s", exc, extra={"announce": True})
        return 1
