"""Reconnect backoff for one job server: exponential delays with jitter, and an optional failure cap after which
the server is disabled. Time is passed in (``now``) so the logic is tested without a clock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]

_MAX_DOUBLINGS = 60
"""Doublings after which the delay is at any sane cap (0.001 s · 2**60 is 36 million years)."""


@dataclass(slots=True)
class Backoff:
    """Failure bookkeeping for one server.

    Attributes:
        initial: delay after the first failure, in seconds (default 0.1).
        maximum: the delay doubles per failure up to this cap, in seconds (default 30), and stays there: a server
            that is down for hours is still tried every ``maximum`` seconds (with jitter: 50 to 100 % of the delay).
        max_failures: consecutive failures after which the server is disabled for good (default None: never).
    """

    initial: float = 0.1
    maximum: float = 30.0
    max_failures: int | None = None
    failures: int = 0
    retry_at: float = 0.0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def disabled(self) -> bool:
        """True once ``max_failures`` consecutive failures happened."""
        return self.max_failures is not None and self.failures >= self.max_failures

    def available(self, now: float) -> bool:
        """Whether a connection attempt may be made at ``now``."""
        return not self.disabled and now >= self.retry_at

    def delay(self, now: float) -> float:
        """Seconds until the next attempt may be made (0 when it may be made now)."""
        return max(0.0, self.retry_at - now)

    def failed(self, now: float) -> None:
        """Record a failed attempt (or a lost connection) at ``now`` and schedule the next one."""
        self.failures += 1
        # The exponent stops growing once the delay is at its cap: 2.0 ** 1024 overflows after a long outage.
        step = min(self.maximum, self.initial * 2.0 ** min(self.failures - 1, _MAX_DOUBLINGS))
        self.retry_at = now + step * (0.5 + self._random.random() / 2)

    def succeeded(self) -> None:
        """Record a working connection: the next failure starts from ``initial`` again."""
        self.failures = 0
        self.retry_at = 0.0

    def reset(self) -> None:
        """Forget every failure, re-enabling a disabled server (e.g. when the server list is replaced)."""
        self.succeeded()
