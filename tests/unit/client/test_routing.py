"""Router alone: unique-key hashing, spreading, backoff skipping and disabling, replacing servers, prefix."""

from __future__ import annotations

import pytest

from gearworks.client.routing import Router
from gearworks.connection import ServerAddress
from gearworks.errors import NoServerAvailable

SERVERS = ["10.0.0.1:4730", "10.0.0.2:4730", "10.0.0.3:4730", "/run/gearman.sock"]


def test_same_unique_key_always_reaches_the_same_server() -> None:
    router = Router(SERVERS)
    picks = {key: router.pick(0.0, key) for key in (f"key-{i}".encode() for i in range(200))}
    assert all(router.pick(5.0, key) == server for key, server in picks.items())
    assert Router(list(reversed(SERVERS))).pick(0.0, b"key-7") == picks[b"key-7"]  # independent of list order
    assert len(set(picks.values())) == len(SERVERS)  # and keys spread over every server


def test_removing_a_server_moves_only_its_keys() -> None:
    router = Router(SERVERS)
    keys = [f"k{i}".encode() for i in range(300)]
    before = {key: router.pick(0.0, key) for key in keys}
    removed = router.replace(SERVERS[:3])
    assert removed == [ServerAddress.parse(SERVERS[3])]
    for key in keys:
        if before[key] != removed[0]:
            assert router.pick(0.0, key) == before[key]


def test_jobs_without_unique_key_are_spread_round_robin() -> None:
    router = Router(SERVERS[:3])
    assert [router.pick(0.0) for _ in range(6)] == [ServerAddress.parse(s) for s in SERVERS[:3] * 2]


def test_failed_server_is_skipped_until_its_backoff_passes() -> None:
    router = Router(SERVERS[:2], backoff_initial=1.0)
    first, second = router.servers
    key = next(k for k in (f"x{i}".encode() for i in range(100)) if router.pick(0.0, k) == first)
    router.failed(first, now=10.0)
    assert router.pick(10.1, key) == second
    assert {router.pick(10.1) for _ in range(4)} == {second}
    assert router.pick(11.1, key) == first  # delay <= initial, with jitter in [0.5, 1.0] * initial
    router.succeeded(first)
    router.failed(first, now=20.0)
    assert router.backoffs[first].failures == 1


def test_server_disabled_after_backoff_max_failures_until_list_replaced() -> None:
    router = Router(SERVERS[:1], backoff_initial=0.01, backoff_maximum=0.01, backoff_max=3)
    (only,) = router.servers
    for attempt in range(3):
        router.failed(only, now=float(attempt))
    with pytest.raises(NoServerAvailable, match="disabled after 3 failed attempts"):
        router.pick(100.0)
    router.replace(SERVERS[:1])
    assert router.pick(100.0) == only


def test_every_server_backing_off_raises_no_server_available() -> None:
    router = Router(SERVERS[:2], backoff_initial=5.0)
    for server in router.servers:
        router.failed(server, now=0.0)
    with pytest.raises(NoServerAvailable, match="retried in"):
        router.pick(0.1, b"key")


def test_prefix_namespaces_function_names_with_a_tab() -> None:
    assert Router(SERVERS, prefix="app").function("resize") == b"app\tresize"
    assert Router(SERVERS).function(b"resize") == b"resize"
    assert Router(SERVERS).function("naïve") == "naïve".encode()


def test_a_server_down_for_an_hour_is_tried_again_when_it_returns() -> None:
    # The default never disables: after an hour of failures (~160 attempts) the server is retried within the cap.
    router = Router(SERVERS[:2])
    first, second = router.servers
    now = 0.0
    while now < 3600.0:
        router.failed(first, now)
        router.failed(second, now)
        with pytest.raises(NoServerAvailable, match="retried in"):
            router.pick(now)
        now += max(router.backoffs[first].delay(now), router.backoffs[second].delay(now))
    assert router.pick(now) in (first, second)
    router.succeeded(first)
    assert router.pick(now + 0.001, b"any key") in (first, second)
