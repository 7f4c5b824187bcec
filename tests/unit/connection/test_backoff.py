"""Backoff delays, their cap, and disabling after max_failures."""

from __future__ import annotations

import random

from gearworks.connection.backoff import Backoff


def test_delays_double_with_jitter_up_to_the_maximum() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, _random=random.Random(7))
    delays = []
    for _ in range(6):
        backoff.failed(now=100.0)
        delays.append(backoff.delay(now=100.0))
    for attempt, delay in enumerate(delays):
        step = min(8.0, 2.0**attempt)
        assert step / 2 <= delay <= step
    assert not backoff.available(100.0)
    assert backoff.available(100.0 + 8.0)


def test_success_resets_and_max_failures_disables() -> None:
    backoff = Backoff(initial=0.5, max_failures=2)
    backoff.failed(0.0)
    backoff.succeeded()
    assert backoff.available(0.0)
    backoff.failed(0.0)
    backoff.failed(0.0)
    assert backoff.disabled
    assert not backoff.available(1e9)
    backoff.reset()
    assert backoff.available(0.0)


def test_two_thousand_failures_keep_the_delay_at_its_cap() -> None:
    # Two hours of outage at ~1 attempt every few seconds: 2 ** (failures - 1) used to overflow near 1,024.
    backoff = Backoff(initial=0.1, maximum=30.0, _random=random.Random(3))
    now = 0.0
    for _ in range(2_000):
        backoff.failed(now)
        delay = backoff.delay(now)
        assert 0.0 < delay <= 30.0
        now += delay
    assert backoff.delay(now) == 0.0
    assert backoff.available(now)
    assert not backoff.disabled
    backoff.failed(now)
    assert 15.0 <= backoff.delay(now) <= 30.0
