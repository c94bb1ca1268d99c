"""Exponential backoff with full jitter for retrying the monitor.

Full jitter (delay drawn uniformly from [0, min(cap, base * 2**n)]) rather than a fixed
schedule: after a monitor outage every site's probe retries at once, and jitter spreads that
thundering herd while keeping the expected delay growing exponentially.

A server's ``Retry-After`` (RFC 9110 section 10.2.3; the monitor sends it with 503
``database_unavailable`` and 429) is a floor on the next delay, honoured up to
``RETRY_AFTER_MAX_S`` whatever the backoff's own cap: the server knows when it will be ready,
and a bound keeps a wrong header from silencing a probe for hours.
"""

from __future__ import annotations

import random

RETRY_AFTER_MAX_S = 60.0
_MAX_EXPONENT = 62  # 2**62 * base already exceeds any sane cap; avoids float overflow


class Backoff:
    """Retry delays for consecutive failures; ``reset`` after a success."""

    def __init__(self, base_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if base_s <= 0 or max_s < base_s:
            raise ValueError("backoff needs 0 < backoff_base_s <= backoff_max_s")
        self.base_s = base_s
        self.max_s = max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay_s(self, retry_after_s: float | None = None) -> float:
        """Delay before the next attempt; honours a server's Retry-After up to 60 s."""
        ceiling_s = min(self.max_s, self.base_s * 2 ** min(self.failures, _MAX_EXPONENT))
        self.failures += 1
        delay_s = self._rng.uniform(0.0, ceiling_s)
        if retry_after_s is not None:
            delay_s = max(delay_s, min(retry_after_s, RETRY_AFTER_MAX_S))
        return delay_s

    def max_delay_s(self) -> float:
        """The capped delay, used when retrying soon cannot help (bad token, wrong URL)."""
        self.failures += 1
        return self.max_s

    def reset(self) -> None:
        self.failures = 0
