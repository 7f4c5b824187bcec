"""Routing and the change guard of the HTTP API, requests built in memory (no sockets)."""

from __future__ import annotations

import json

from gearworks.server.admin import AdminCommands
from gearworks.server.api import History
from gearworks.server.board import Board
from gearworks.server.connections import Hub
from gearworks.server.http import HttpApi, Request


def api(token: str | None = None) -> HttpApi:
    board = Board()
    hub = Hub(board, AdminCommands(board, version=b"t"), on_action=lambda action: None)
    return HttpApi(hub, History(), token)


def request(method: str, path: str, *, local: bool = True, **headers: str) -> Request:
    segments = tuple(part.encode() for part in path.split("/")[1:])
    return Request(method, path, segments, {"host": "gw:80", **headers}, local)


def test_remote_changes_need_the_token_loopback_ones_do_not() -> None:
    path = "/api/dead-letters/all/purge"
    assert api().respond(request("POST", path)).status == 200
    refused = api().respond(request("POST", path, local=False))
    assert refused.status == 403
    assert b"--http-token" in refused.body
    guarded = api("s3cret")
    assert guarded.respond(request("POST", path, local=False)).status == 403
    assert guarded.respond(request("POST", path, local=False, authorization="Bearer wrong")).status == 403
    assert guarded.respond(request("POST", path, local=False, authorization="Bearer s3cret")).status == 200
    assert guarded.respond(request("GET", "/api/status", local=False)).status == 200  # reading needs no token


def test_a_page_of_another_origin_may_not_change_anything() -> None:
    path = "/api/dead-letters/all/requeue"
    assert api().respond(request("POST", path, origin="http://evil.example")).status == 403
    assert api().respond(request("POST", path, origin="http://gw:80")).status == 200


def test_unknown_paths_and_wrong_methods() -> None:
    assert api().respond(request("GET", "/api/nothing")).status == 404
    wrong = api().respond(request("GET", "/api/jobs/H:1/cancel"))
    assert wrong.status == 405
    assert ("Allow", "POST") in wrong.headers
    assert api().respond(request("DELETE", "/metrics")).status == 405
    assert api().respond(request("HEAD", "/metrics")).status == 200


def test_status_document_lists_functions_with_gauges() -> None:
    app = api()
    app.board.submit(b"f", b"", b"x", background=True)
    document = json.loads(app.respond(request("GET", "/api/status")).body)
    (row,) = document["functions"]
    assert (row["name"], row["queued"], row["running"], row["workers"]) == ("f", 1, 0, 0)
    assert document["server"]["jobs"] == 1


def test_history_points_and_rates_from_one_second_samples() -> None:
    board = Board()
    history = History()
    history.sample(board, 100.0)
    for _ in range(3):
        board.submit(b"f", b"", b"x", background=True)
    worker = board.connect()
    board.can_do(worker, b"f")
    board.grab(worker, 100.5)
    history.sample(board, 102.0)
    (point,) = history.series()
    assert (point["submitted"], point["completed"], point["queued"], point["running"]) == (1.5, 0.0, 2, 1)
    assert history.rates(b"f") == (1.5, 0.0, 0.0)
    assert history.rates(b"unknown") == (0.0, 0.0, 0.0)
