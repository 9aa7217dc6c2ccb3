"""A per-client rate limit (token bucket), so one client cannot take a shared server's whole queue."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from t2i.request import RequestError

MAX_TRACKED_CLIENTS = 10_000  # oldest buckets are dropped beyond this, so memory stays bounded


class RateLimited(RequestError):
    """The client sent more requests than the operator allows per minute."""


class RateLimiter:
    """Allows `per_minute` requests per client, with bursts up to `burst`; 0 turns the limit off."""

    def __init__(self, per_minute: float, burst: int | None = None, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = burst if burst is not None else max(1, int(per_minute))
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, last time)
        self._lock = threading.Lock()

    def acquire(self, client: str) -> None:
        """Take one request's token for `client`, or raise RateLimited saying when to retry."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise RateLimited(f"too many requests from this client; try again in {wait:.0f} s")
            self._buckets[client] = (tokens - 1.0, now)
            while len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
