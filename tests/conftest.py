"""Fixtures shared by every test directory: real job servers on free loopback ports, always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.servers import GEARMAND, ServerProcess, gearmand_process, have

ServerFactory = Callable[..., ServerProcess]


def require(binary: str, package: str) -> None:
    """Skip the calling test, naming the Debian package, when binary is absent."""
    if not have(binary):
        pytest.skip(f"{binary} not installed (Debian package {package})")


@pytest.fixture
def gearmand_factory() -> Iterator[ServerFactory]:
    """Start C gearmand processes (``factory("-j", "2")``); every one started is stopped after the test."""
    require(GEARMAND, "gearman-job-server")
    started: list[ServerProcess] = []

    def factory(*options: str, port: int | None = None) -> ServerProcess:
        server = gearmand_process(*options, port=port)
        started.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in started:
            server.close()


@pytest.fixture
def gearmand(gearmand_factory: ServerFactory) -> ServerProcess:
    """One C gearmand on a free loopback port."""
    return gearmand_factory()
