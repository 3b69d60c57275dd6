"""The per-connection rate limit: a token bucket with a burst and a sustained rate."""

from __future__ import annotations


class TokenBucket:
    """Admits bursts of `burst` frames and `rate` frames a second sustained.

    `take(now)` is called once per frame with the loop's clock; it never blocks.
    `strikes` counts refusals in a row, so the connection can be closed (4429) when a
    client goes on after being told.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate", "strikes")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = now
        self.strikes = 0

    def take(self, now: float) -> bool:
        tokens = self._tokens + (now - self._last) * self.rate
        self._last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            self.strikes = 0
            return True
        self._tokens = tokens
        self.strikes += 1
        return False
