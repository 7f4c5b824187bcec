"""Fixtures shared by every test directory: real job servers on free loopback ports, always cleaned up."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from tests.servers import GEARMAND, ServerProcess, gearmand_process, gearworks_process, have

ServerFactory = Callable[..., ServerProcess]


def require(binary: str, package: str) -> None:
    """Skip the calling test, naming the Debian package, when binary is absent."""
    if not have(binary):
        pytest.skip(f"{binary} not installed (Debian package {package})")


@contextlib.contextmanager
def _factory(make: Callable[..., ServerProcess]) -> Iterator[ServerFactory]:
    """A factory of started servers made by ``make``; every one it started is stopped at the end."""
    started: list[ServerProcess] = []

    def factory(*options: str, port: int | None = None) -> ServerProcess:
        server = make(*options, port=port)
        started.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in started:
            server.close()


@pytest.fixture
def gearmand_factory() -> Iterator[ServerFactory]:
    """Start C gearmand processes (``factory("-j", "2")``); every one started is stopped after the test."""
    require(GEARMAND, "gearman-job-server")
    with _factory(gearmand_process) as factory:
        yield factory


@pytest.fixture
def gearmand(gearmand_factory: ServerFactory) -> ServerProcess:
    """One C gearmand on a free loopback port."""
    return gearmand_factory()


@pytest.fixture
def gearworks_server_factory() -> Iterator[ServerFactory]:
    """Start ``gearworks serve`` processes (``factory("-j", "2")``); every one started is stopped after the test."""
    with _factory(gearworks_process) as factory:
        yield factory


@pytest.fixture
def gearworks_server(gearworks_server_factory: ServerFactory) -> ServerProcess:
    """One gearworks job server on a free loopback port."""
    return gearworks_server_factory()


@pytest.fixture(params=["gearmand", "gearworks"])
def job_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A job server of each kind in turn, C gearmand and ``gearworks serve``: for behaviour both must share."""
    if request.param == "gearmand":
        require(GEARMAND, "gearman-job-server")
    server = (gearmand_process if request.param == "gearmand" else gearworks_process)()
    try:
        yield server.start()
    finally:
        server.close()
