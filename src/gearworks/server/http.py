"""The job server's HTTP side: ``/metrics``, the JSON API and the dashboard, on the job server's own event loop.

How this works: ``HttpConnection`` is an ``asyncio.Protocol`` reading HTTP/1.1 requests (keep-alive, pipelined
requests answered in order, no chunked request bodies); each complete request goes to ``HttpApi.respond``, which
routes it through a table keyed by path and method and returns one ``Response``. Requests are bounded
(``MAX_HEAD`` bytes of request line and headers, ``MAX_BODY`` of body) and a bad one gets 400, 404, 405, 411, 413
or 431 and, when the connection cannot continue, a close. Reads go to the board and ``Stats`` directly (the loop
runs one thing at a time); the changes (requeue, purge, cancel) go through the hub so that woken workers and
durable-queue writes are flushed as after any packet. Changes are POST only, refused with 403 from a peer that is
not loopback unless it sends ``Authorization: Bearer TOKEN`` for ``--http-token``, and refused from a browser page
of another origin (its ``Origin`` header names another host), so a web page cannot make a visitor's browser
requeue or cancel jobs. Only standard library HTTP: no framework on the server's loop.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast
from urllib.parse import unquote_to_bytes, urlsplit

from gearworks.server import api, metrics
from gearworks.server.api import History
from gearworks.server.connections import Hub

__all__ = ["MAX_BODY", "MAX_HEAD", "HttpApi", "HttpConnection", "HttpServer", "Request", "Response"]

log = logging.getLogger("gearworks.server")

MAX_HEAD = 16 * 1024
"""Largest request line plus headers accepted (431 beyond)."""
MAX_BODY = 64 * 1024
"""Largest request body accepted (413 beyond); no endpoint reads one."""
IDLE_TIMEOUT = 60.0
"""Seconds a keep-alive connection may sit without a request before it is closed."""
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request: method, the path's segments percent-decoded to bytes, headers by lower-case name."""

    method: str
    path: str
    segments: tuple[bytes, ...]
    headers: dict[str, str]
    local: bool


@dataclass(frozen=True, slots=True)
class Response:
    """One response; ``close`` ends the connection after it."""

    status: int
    body: bytes
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False

    def encode(self, keep_alive: bool) -> bytes:
        """Status line, headers and body."""
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Error')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Connection: " + ("keep-alive" if keep_alive and not self.close else "close"),
        ]
        lines += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _json(document: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(document, separators=(",", ":")).encode())


def _error(status: int, message: str, *, close: bool = False, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, json.dumps({"error": message}).encode(), headers=headers, close=close)


Route = Callable[[Request], Response]


class HttpApi:
    """What each path answers. Args: the server's hub, the history of totals, the ``--http-token``."""

    def __init__(self, hub: Hub, history: History, token: str | None = None) -> None:
        self.hub = hub
        self.board = hub.board
        self.history = history
        self.token = token
        self._static: dict[str, bytes] = {}
        # path → method → handler; paths with a variable segment are matched on their fixed parts below.
        self._routes: dict[str, dict[str, Route]] = {
            "/metrics": {"GET": self._metrics},
            "/api/status": {"GET": lambda _: _json(api.status(self.board, self.history))},
            "/api/stats": {"GET": lambda _: _json(api.counters(self.board))},
            "/api/workers": {"GET": lambda _: _json(api.workers(self.board))},
            "/api/dead-letters": {"GET": lambda _: _json(api.dead_letters(self.board))},
        }
        for path in _STATIC:
            self._routes[path] = {"GET": self._file}

    def respond(self, request: Request) -> Response:
        """The response to one request."""
        methods = self._routes.get(request.path) or self._variable(request)
        if methods is None:
            return _error(404, f"no such resource: {request.path}")
        handler = methods.get(request.method) or (methods.get("GET") if request.method == "HEAD" else None)
        if handler is None:
            return _error(405, f"{request.method} not allowed here", headers=(("Allow", ", ".join(methods)),))
        if request.method == "POST":
            refused = self._refuse(request)
            if refused is not None:
                return refused
        return handler(request)

    def _variable(self, request: Request) -> dict[str, Route] | None:
        """Routes with a name or handle in the path: /api/functions/{name}, /api/dead-letters/{handle}/requeue,
        /api/dead-letters/{handle}/purge (``all`` for every one), /api/jobs/{handle}/cancel."""
        segments = request.segments
        if len(segments) == 3 and segments[:2] == (b"api", b"functions") and segments[2]:
            return {"GET": self._function}
        if len(segments) == 4 and segments[:2] == (b"api", b"dead-letters") and segments[3] in (b"requeue", b"purge"):
            return {"POST": self._dead}
        if len(segments) == 4 and segments[:2] == (b"api", b"jobs") and segments[3] == b"cancel":
            return {"POST": self._cancel}
        return None

    def _refuse(self, request: Request) -> Response | None:
        """Why a change may not be made, or None: another origin's page, or a remote peer without the token."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return _error(403, "cross-origin requests may not change anything")
        if request.local:
            return None
        if self.token is None:
            return _error(403, "changes are accepted from loopback only (start the server with --http-token)")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return _error(403, "missing or wrong Authorization: Bearer token")
        return None

    def _metrics(self, request: Request) -> Response:
        body = metrics.render(metrics.families(self.board))
        return Response(200, body, metrics.CONTENT_TYPE)

    def _file(self, request: Request) -> Response:
        name, content_type = _STATIC[request.path]
        body = self._static.get(name)
        if body is None:
            body = self._static[name] = resources.files("gearworks.server").joinpath("static", name).read_bytes()
        return Response(200, body, content_type)

    def _function(self, request: Request) -> Response:
        detail = api.function_detail(self.board, self.history, request.segments[2])
        return _error(404, "no such function") if detail is None else _json(detail)

    def _change(self, change: Callable[[], int]) -> int:
        """Run a board change and flush the hub, so its output (NOOPs, WORK_FAIL) and durable writes go out."""
        try:
            return change()
        finally:
            self.hub.flush()

    def _dead(self, request: Request) -> Response:
        handle = None if request.segments[2] == b"all" else request.segments[2]
        action = self.board.requeue_dead if request.segments[3] == b"requeue" else self.board.purge_dead
        count = self._change(lambda: action(handle))
        if handle is not None and not count:
            return _error(404, "no such dead letter")
        return _json({request.segments[3].decode() + "d": count})

    def _cancel(self, request: Request) -> Response:
        handle = request.segments[2]
        if not self._change(lambda: int(self.board.cancel(handle))):
            return _error(404, "no such job")
        return _json({"cancelled": 1})


def _is_loopback(transport: asyncio.BaseTransport) -> bool:
    peername = transport.get_extra_info("peername")
    if not (isinstance(peername, tuple) and peername):
        return False
    try:
        return ipaddress.ip_address(str(peername[0]).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class HttpConnection(asyncio.Protocol):
    """One HTTP connection: requests parsed from its bytes, answered in order."""

    def __init__(self, app: HttpApi) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.local = False
        self._buffer = bytearray()
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Note whether the peer is on loopback; start the idle timer."""
        self.transport = cast(asyncio.Transport, transport)
        self.local = _is_loopback(transport)
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.transport is not None:
            self._idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.transport.close)

    def data_received(self, data: bytes) -> None:
        """Answer every complete request in the buffer."""
        self._buffer += data
        self._touch()
        while self.transport is not None and not self.transport.is_closing():
            parsed = self._take()
            if parsed is None:
                return
            response, keep_alive, head_only = parsed
            payload = response.encode(keep_alive)
            if head_only:
                payload = payload[: payload.index(b"\r\n\r\n") + 4]
            self.transport.write(payload)
            if response.close or not keep_alive:
                self.transport.close()

    def _take(self) -> tuple[Response, bool, bool] | None:
        """The next request's (response, keep the connection, HEAD), or None until it is complete."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                return _error(431, "request head too large", close=True), False, False
            return None
        if end > MAX_HEAD:
            return _error(431, "request head too large", close=True), False, False
        try:
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon or not name or name != name.strip():
                    raise ValueError(line)
                headers[name.lower()] = value.strip()
            if not version.startswith("HTTP/1.") or not target.startswith("/"):
                raise ValueError(lines[0])
            length = int(headers.get("content-length", "0"))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            return _error(400, "malformed request", close=True), False, False
        if "transfer-encoding" in headers:
            return _error(411, "chunked request bodies are not accepted; send Content-Length", close=True), False, False
        if length > MAX_BODY:
            return _error(413, "request body too large", close=True), False, False
        if len(buffer) < end + 4 + length:
            return None
        del buffer[: end + 4 + length]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version != "HTTP/1.0" or connection == "keep-alive")
        path = target.split("?", 1)[0]
        segments = tuple(unquote_to_bytes(part) for part in path.split("/")[1:])
        request = Request(method, path, segments, headers, self.local)
        try:
            response = self.app.respond(request)
        except Exception:
            log.exception("internal error answering %s %s", method, path)
            response = Response(500, b'{"error":"internal error"}', close=True)
        return response, keep_alive, method == "HEAD"

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the idle timer."""
        if self._idle is not None:
            self._idle.cancel()
        self.transport = None


@dataclass
class HttpServer:
    """The HTTP listener and the once-a-second sampling of totals for rates and charts.

    Args:
        hub: the job server's hub (board and flush).
        token: ``--http-token``: lets remote peers make changes.
    """

    hub: Hub
    token: str | None = None
    history: History = field(default_factory=History)
    server: asyncio.AbstractServer | None = None
    _timer: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, context: ssl.SSLContext | None = None) -> list[str]:
        """Listen; returns the URLs listened on (``http://host:port`` or ``https://…``)."""
        app = HttpApi(self.hub, self.history, self.token)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: HttpConnection(app), host, port, reuse_address=True, ssl=context)
        self._sample()
        scheme = "https" if context else "http"
        urls = []
        for sock in self.server.sockets:
            name = sock.getsockname()
            host_text = f"[{name[0]}]" if ":" in name[0] else name[0]
            urls.append(f"{scheme}://{host_text}:{name[1]}")
        return urls

    def _sample(self) -> None:
        self.history.sample(self.hub.board, time.time())
        self._timer = asyncio.get_running_loop().call_later(1.0, self._sample)

    def close(self) -> None:
        """Stop listening and sampling (open HTTP connections end with the loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.server is not None:
            self.server.close()
            self.server = None
