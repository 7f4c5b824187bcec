"""The package's layers, checked in fresh interpreters: importing a layer loads nothing above it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_ABOVE_PROTOCOL = ("gearworks.client", "gearworks.worker", "gearworks.admin", "gearworks.server", "gearworks.cli")


def _modules_after(statement: str) -> set[str]:
    """The names in ``sys.modules`` after running ``statement`` in a new interpreter."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    return set(json.loads(done.stdout))


def _loaded(modules: set[str], packages: tuple[str, ...]) -> set[str]:
    """The loaded modules that are one of ``packages`` or inside one."""
    return {name for name in modules if name in packages or name.startswith(tuple(f"{p}." for p in packages))}


@pytest.mark.parametrize(
    "statement",
    ["import gearworks.protocol", "from gearworks.protocol import Decoder, encode", "import gearworks.protocol.fields"],
)
def test_protocol_imports_no_front_end_and_no_asyncio(statement: str) -> None:
    modules = _modules_after(statement)
    assert not _loaded(modules, _ABOVE_PROTOCOL)
    assert "asyncio" not in modules


def test_package_root_loads_its_names_lazily() -> None:
    modules = _modules_after("import gearworks; gearworks.__version__")
    assert not _loaded(modules, ("gearworks.client", "gearworks.worker", "gearworks.admin", "gearworks.server"))
    assert "asyncio" not in modules


def test_package_root_name_loads_only_its_layer() -> None:
    modules = _modules_after("from gearworks import Client")
    assert "gearworks.client" in modules
    assert not _loaded(modules, ("gearworks.worker", "gearworks.server", "gearworks.cli"))


def test_blocking_client_and_worker_do_not_need_the_server() -> None:
    modules = _modules_after("import gearworks.client, gearworks.worker, gearworks.admin")
    assert not _loaded(modules, ("gearworks.server", "gearworks.cli"))


def test_every_public_name_resolves() -> None:
    import gearworks

    for name in gearworks.__all__:
        assert getattr(gearworks, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = gearworks.no_such_name
