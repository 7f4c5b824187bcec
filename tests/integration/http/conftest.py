"""``gearworks serve --http-port 0`` processes: the job port and the HTTP port read back from the startup log."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.servers import ServerProcess, gearworks_process


@dataclass
class HttpProcess:
    """A running server with its HTTP side: ``get``/``post`` return (status, parsed JSON or text)."""

    process: ServerProcess
    http_port: int

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, body, kind = error.code, error.read(), error.headers.get("Content-Type", "")
        return status, json.loads(body) if kind.startswith("application/json") else body.decode()

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def post(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.request("POST", path, headers)


HttpFactory = Callable[..., HttpProcess]


@pytest.fixture
def http_server_factory() -> Iterator[HttpFactory]:
    """Start servers with ``--http-port 0`` and extra options; each is stopped after the test."""
    started: list[ServerProcess] = []

    def factory(*options: str) -> HttpProcess:
        process = gearworks_process("--http-port", "0", "--verbose", "INFO", *options)
        started.append(process)
        process.start()
        process.port = process.announced("tcp")  # the first port seen listening may be the HTTP one
        return HttpProcess(process, process.announced("http"))

    try:
        yield factory
    finally:
        for process in started:
            process.close()


@pytest.fixture
def http_server(http_server_factory: HttpFactory) -> HttpProcess:
    """One server with ``--job-retries 1`` (a worker lost once buries a background job)."""
    return http_server_factory("--job-retries", "1")
