"""The CLI tests run each command against C gearmand and against gearworks' own server."""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory
from tests.servers import ServerProcess

FACTORIES = {"gearmand": "gearmand_factory", "gearworks": "gearworks_server_factory"}


@pytest.fixture(params=sorted(FACTORIES))
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """A running job server of each kind."""
    factory: ServerFactory = request.getfixturevalue(FACTORIES[request.param])
    return factory()
