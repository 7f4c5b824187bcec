"""Real Redis and PostgreSQL servers for the queue-store tests, one of each per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.datastores import REDIS_SERVER, PostgresCluster, postgres_bin, postgres_server, redis_process
from tests.servers import ServerProcess


@pytest.fixture(scope="module")
def redis_server() -> Iterator[ServerProcess]:
    """A private redis-server (appendfsync always) on a free loopback port."""
    require(REDIS_SERVER, "redis-server")
    server = redis_process()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster made with initdb in a temporary directory, running (a test that stops it
    starts it again)."""
    if postgres_bin() is None:
        pytest.skip("initdb not installed (Debian package postgresql)")
    with postgres_server() as cluster:
        cluster.start()
        yield cluster


@pytest.fixture(scope="module")
def postgres_url(postgres: PostgresCluster) -> str:
    """The URL of the private PostgreSQL cluster."""
    return postgres.url
