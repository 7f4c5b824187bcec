"""The HTTP side of ``gearworks serve --http-port 0``: counters of a known workload end to end, /metrics parsed
back by prometheus-client, the JSON API, dead letters and cancels by POST, and bad requests."""

from __future__ import annotations

import socket
import time

from prometheus_client.parser import text_string_to_metric_families

from gearworks.protocol import PacketType
from tests.integration.http.conftest import HttpFactory, HttpProcess
from tests.integration.server_wire import Wire, abandon

T = PacketType


def samples(server: HttpProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every /metrics sample by (name, labels), read with prometheus-client's own parser."""
    text = server.get("/metrics")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]


def submit_background(port: int, function: bytes, count: int, payload: bytes = b"x" * 10) -> list[bytes]:
    with Wire(port) as client:
        handles = []
        for _ in range(count):
            reply = client.request(T.SUBMIT_JOB_BG, function, b"", payload)
            assert reply.type is T.JOB_CREATED
            handles.append(reply.args[0])
        return handles


def wait_until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_counters_of_a_known_workload(http_server_factory: HttpFactory) -> None:
    server = http_server_factory("--job-retries", "2")
    handles = submit_background(server.port, b"resize", 20)
    with Wire(server.port) as worker:
        worker.send(T.CAN_DO, b"resize")
        for n in range(16):  # 12 completed, 3 failed, 1 exception, in FIFO order
            (assign,) = [worker.request(T.GRAB_JOB)]
            assert assign.type is T.JOB_ASSIGN
            assert assign.args[0] == handles[n]
            if n < 12:
                worker.send(T.WORK_COMPLETE, assign.args[0], b"ok")
            elif n < 15:
                worker.send(T.WORK_FAIL, assign.args[0])
            else:
                worker.send(T.WORK_EXCEPTION, assign.args[0], b"boom")
    with Wire(server.port) as admin:
        assert admin.admin(b"cancel job " + handles[19] + b"\r\n") == b"OK\r\n"
    with Wire(server.port) as slow:  # handles[16] outlives CAN_DO_TIMEOUT
        slow.send(T.CAN_DO_TIMEOUT, b"resize", b"1")
        assert slow.request(T.GRAB_JOB).args[0] == handles[16]
        wait_until(lambda: value(samples(server), "gearworks_jobs_timed_out_total", function="resize") == 1)
    # Left: 17 and 18. Lost workers: 17 is requeued, then 18, then 17 again is its second loss and is buried.
    assert [abandon(server.port, b"resize") for _ in range(3)] == [handles[17], handles[18], handles[17]]
    with Wire(server.port) as bad:
        bad.send(T.ECHO_REQ, b"x", magic=b"\0RES")
        assert bad.recv(1)[0].type is T.ERROR
    wait_until(lambda: server.get("/api/dead-letters"))

    metrics = samples(server)
    expected = {
        "gearworks_jobs_completed_total": 12, "gearworks_jobs_failed_total": 3, "gearworks_jobs_exceptions_total": 1,
        "gearworks_jobs_timed_out_total": 1, "gearworks_jobs_cancelled_total": 1,
        "gearworks_jobs_retried_total": 2, "gearworks_jobs_dead_lettered_total": 1,
        "gearworks_workload_bytes_total": 200, "gearworks_result_bytes_total": 12 * 2 + 4,
        "gearworks_job_run_seconds_count": 16, "gearworks_job_wait_seconds_count": 20,
        "gearworks_jobs_running": 0, "gearworks_dead_letters": 1,
    }  # fmt: skip
    assert {name: value(metrics, name, function="resize") for name in expected} == expected
    submitted = value(
        metrics, "gearworks_jobs_submitted_total", function="resize", priority="normal", kind="background"
    )
    assert submitted == 20
    assert value(metrics, "gearworks_jobs_queued", function="resize", priority="normal") == 1
    assert value(metrics, "gearworks_bad_input_total", kind="magic") == 1
    assert value(metrics, "gearworks_accepted_connections_total") >= 8
    assert value(metrics, "gearworks_packets_total") > 40

    row = server.get("/api/status")["functions"][0]
    assert (row["name"], row["queued"], row["completed"], row["timed_out"]) == ("resize", 1, 12, 1)
    assert row["run"]["count"] == 16
    assert row["run"]["p99"] is not None
    assert server.get("/api/stats")["functions"]["resize"]["retried"] == 2
    with Wire(server.port) as admin:
        fields = admin.admin(b"stats resize\r\n").split(b"\n")[0].split(b"\t")
        assert fields[:4] == [b"resize", b"1", b"0", b"0"]
        assert fields[4:19] == [b"0", b"0", b"0", b"0", b"20", b"0", b"12", b"3", b"1", b"2", b"1", b"1", b"1",
                                b"200", b"28"]  # fmt: skip
        # Counting changes no gearmand reply: status is still NAME, TOTAL, RUNNING, WORKERS.
        assert admin.admin(b"status\r\n") == b"resize\t1\t0\t0\n.\n"


def test_dead_letters_requeue_and_purge_by_post(http_server: HttpProcess) -> None:
    (handle,) = submit_background(http_server.port, b"thumb", 1)
    assert abandon(http_server.port, b"thumb") == handle
    wait_until(lambda: http_server.get("/api/dead-letters"))
    (letter,) = http_server.get("/api/dead-letters")
    assert (letter["handle"], letter["function"], letter["retries"]) == (handle.decode(), "thumb", 1)
    assert http_server.post(f"/api/dead-letters/{handle.decode()}/requeue") == (200, {"requeued": 1})
    assert http_server.get("/api/dead-letters") == []
    assert http_server.get("/api/functions/thumb")["queued"] == 1
    assert abandon(http_server.port, b"thumb") == handle
    wait_until(lambda: http_server.get("/api/dead-letters"))
    assert http_server.post("/api/dead-letters/all/purge") == (200, {"purged": 1})
    status, body = http_server.post(f"/api/dead-letters/{handle.decode()}/purge")
    assert status == 404
    assert "no such dead letter" in body["error"]


def test_cancel_by_post_and_cross_origin_pages_are_refused(http_server: HttpProcess) -> None:
    (handle,) = submit_background(http_server.port, b"c", 1)
    status, body = http_server.post(f"/api/jobs/{handle.decode()}/cancel", {"Origin": "http://evil.example"})
    assert status == 403
    assert "cross-origin" in body["error"]
    same = {"Origin": http_server.url}
    assert http_server.post(f"/api/jobs/{handle.decode()}/cancel", same) == (200, {"cancelled": 1})
    assert http_server.post(f"/api/jobs/{handle.decode()}/cancel")[0] == 404
    assert value(samples(http_server), "gearworks_jobs_cancelled_total", function="c") == 1


def test_workers_and_function_documents(http_server: HttpProcess) -> None:
    with Wire(http_server.port) as worker:
        worker.send(T.SET_CLIENT_ID, b"thumbs-1")
        worker.send(T.CAN_DO, b"small")
        worker.send(T.CAN_DO, b"with space")
        assert worker.request(T.ECHO_REQ, b"sync").type is T.ECHO_RES
        (row,) = http_server.get("/api/workers")
        assert (row["client_id"], row["functions"], row["running"]) == ("thumbs-1", ["with space", "small"], [])
        detail = http_server.get("/api/functions/with%20space")
        assert (detail["name"], detail["workers"]) == ("with space", 1)
        assert len(detail["wait"]["buckets"]) == 16
        assert detail["wait"]["buckets"][-1]["le"] is None
    assert http_server.request("GET", "/api/functions/nosuch")[0] == 404


def raw_http(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_bad_requests_get_4xx_and_keep_alive_answers_in_order(http_server: HttpProcess) -> None:
    port = http_server.http_port
    assert raw_http(port, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    refused = raw_http(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 405 ")
    assert b"Allow: GET\r\n" in refused
    assert raw_http(port, b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    too_big = b"POST /api/jobs/H:x:1/cancel HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    assert raw_http(port, too_big).startswith(b"HTTP/1.1 413 ")
    chunked = b"POST /api/jobs/H:x:1/cancel HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert raw_http(port, chunked).startswith(b"HTTP/1.1 411 ")
    two = b"GET /api/workers HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    replies = raw_http(port, two)
    assert replies.count(b"HTTP/1.1 200 OK") == 2
    assert replies.endswith(b"\r\n\r\n")  # HEAD: headers only
    page = raw_http(port, b"GET / HTTP/1.0\r\n\r\n")
    assert page.startswith(b"HTTP/1.1 200 ")
    assert b"text/html" in page
    assert b"dashboard.js" in page
