"""Durable-queue faults against real backends and a real ``gearworks serve``: PostgreSQL restarted under a pipelining
client, a locked table and a stopped Redis (QUEUE_ERROR within the timeout, other connections answered, SIGTERM
prompt), a second server refused on a store another one owns, and removals that failed while the store was down
written once it is back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearworks.admin import Admin
from gearworks.protocol import PacketType, encode
from tests.datastores import PostgresCluster
from tests.integration.queues.test_durability import Storm, drain, submit_one
from tests.servers import ServerProcess, gearworks_process


def _drop_tables(url: str, *tables: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        for table in tables:
            db.execute(f"DROP TABLE IF EXISTS {table}, {table}_dead".encode())


@pytest.fixture
def pg_tables(postgres_url: str) -> Iterator[str]:
    """The PostgreSQL URL, with the tables the test made dropped afterwards."""
    yield postgres_url
    _drop_tables(postgres_url, "gearworks_jobs", "other_jobs")


@pytest.fixture
def clean_redis(redis_server: ServerProcess) -> str:
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "flushall"], check=True, capture_output=True)
    return f"redis://127.0.0.1:{redis_server.port}/0"


def test_postgresql_restart_refuses_while_down_and_resumes_by_itself(postgres: PostgresCluster, pg_tables: str) -> None:
    import psycopg

    server = gearworks_process("-q", pg_tables, "--verbose", "WARNING")
    try:
        server.start()
        storm = Storm(server.port)
        storm.send(500)
        deadline = time.monotonic() + 10
        while len(storm.acked) < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
        postgres.stop("fast")
        storm.send(200)  # submitted while PostgreSQL is down
        deadline = time.monotonic() + 10
        while len(storm.errors) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(storm.errors) == 200
        postgres.start()
        restarted = time.monotonic()
        while time.monotonic() - restarted < 5:  # keep submitting: accepted again within a few seconds
            before = len(storm.acked)
            storm.send(50)
            time.sleep(0.1)
            if len(storm.acked) > before:
                break
        recovered = time.monotonic() - restarted
        assert recovered < 3, f"still refusing {recovered:.1f} s after PostgreSQL came back"
        storm.send(500)
        deadline = time.monotonic() + 10
        while len(storm.acked) + len(storm.errors) < len(storm.sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        storm.close()
        assert server.stop() == 0
        with psycopg.connect(pg_tables) as db:
            stored = {bytes(row[0]) for row in db.execute("SELECT unique_key FROM gearworks_jobs")}
        missing = set(storm.acked) - stored
        assert not missing, f"{len(missing)} acknowledged jobs missing"
        assert "connection lost" in server.log()
        assert "reconnected after" in server.log()
    finally:
        server.close()


def _answers_meanwhile(port: int) -> None:
    """ECHO and admin ``status`` on fresh connections are answered at once while the store hangs."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(encode(PacketType.ECHO_REQ, [b"ping"]))
        assert len(sock.recv(100)) == 16
    with Admin(f"127.0.0.1:{port}", command_timeout=2) as admin:
        admin.status()
    assert time.monotonic() - start < 0.5


def _hung_store_gives_queue_errors_and_sigterm_is_prompt(server: ServerProcess) -> None:
    answered: list[tuple[bytes, float]] = []

    def submit(unique: bytes) -> None:
        start = time.monotonic()
        reply = submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"hang", unique, b"x")
        answered.append((reply.args[0] if reply.type is PacketType.ERROR else b"created", time.monotonic() - start))

    submitter = threading.Thread(target=submit, args=(b"during",))
    submitter.start()
    time.sleep(0.3)
    _answers_meanwhile(server.port)
    submitter.join(10)
    ((code, waited),) = answered
    assert code == b"QUEUE_ERROR"
    assert 0.8 < waited < 3  # --queue-timeout 1 (plus the watchdog's grace)
    threading.Thread(target=submit, args=(b"at-exit",), daemon=True).start()
    time.sleep(0.3)  # that write hangs when SIGTERM comes
    assert server.proc is not None
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(10)
    assert time.monotonic() - start < 3.5


def test_locked_postgresql_table_times_out_without_freezing_the_server(pg_tables: str) -> None:
    import psycopg

    server = gearworks_process("-q", pg_tables, "--queue-timeout", "1")
    locker = psycopg.connect(pg_tables)
    try:
        server.start()
        assert submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"hang", b"warm", b"x").type is PacketType.JOB_CREATED
        locker.execute("LOCK TABLE gearworks_jobs IN ACCESS EXCLUSIVE MODE")
        _hung_store_gives_queue_errors_and_sigterm_is_prompt(server)
    finally:
        locker.close()
        server.close()


def test_stopped_redis_times_out_without_freezing_the_server(redis_server: ServerProcess, clean_redis: str) -> None:
    server = gearworks_process("-q", clean_redis, "--queue-timeout", "1")
    try:
        server.start()
        assert submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"hang", b"warm", b"x").type is PacketType.JOB_CREATED
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            _hung_store_gives_queue_errors_and_sigterm_is_prompt(server)
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], list[str], str]:
    """(options of the first server, options of one on another namespace of the same store, the store's name in
    the refusal)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
        return ["-q", url], ["-q", url, "--libsqlite3-table", "other_jobs"], "SQLite queue"
    if request.param == "redis":
        url = request.getfixturevalue("clean_redis")
        return ["-q", url], ["-q", url + "?prefix=other"], "Redis queue"
    url = request.getfixturevalue("pg_tables")
    return ["-q", url], ["-q", url, "--libpq-table", "other_jobs"], "PostgreSQL queue"


def test_a_second_server_on_an_owned_store_is_refused(shared_store: tuple[list[str], list[str], str]) -> None:
    first_options, other_options, store = shared_store
    first = gearworks_process(*first_options)
    second = gearworks_process(*first_options)
    other = gearworks_process(*other_options)
    try:
        first.start()
        refused = subprocess.run(second.argv, check=False, capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1
        (line,) = refused.stderr.strip().splitlines()
        assert store in line
        assert "in use by another server" in line
        assert f":{first.pid}" in line  # names the owner: host:pid
        other.start()  # another table / prefix of the same store: both run, each with its own jobs
        submit_one(first.port, PacketType.SUBMIT_JOB_BG, b"own", b"first", b"x")
        submit_one(other.port, PacketType.SUBMIT_JOB_BG, b"own", b"other", b"x")
        first.stop()
        other.stop()
        first.start()
        other.start()
        assert drain(first.port, b"own", idle=0.5) == [b"first"]
        assert drain(other.port, b"own", idle=0.5) == [b"other"]
    finally:
        first.close()
        second.close()
        other.close()


def test_jobs_completed_while_redis_is_down_do_not_run_again(redis_server: ServerProcess, clean_redis: str) -> None:
    server = gearworks_process("-q", clean_redis, "--queue-timeout", "1")
    try:
        server.start()
        for n in range(20):
            submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"done", b"d%d" % n, b"x")
        redis_server.stop()
        assert len(drain(server.port, b"done", idle=0.5)) == 20  # completed while their removals fail
        redis_server.start()
        time.sleep(2.5)  # the kept removals are retried every second
        server.kill()
        server.start()
        assert drain(server.port, b"done", idle=0.5) == []
    finally:
        server.close()
