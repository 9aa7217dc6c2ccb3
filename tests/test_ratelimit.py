"""The per-client rate limit: bursts up to the limit, then a clear refusal until tokens refill."""

import dataclasses

import pytest

from t2i.web.ratelimit import RateLimited, RateLimiter
from t2i.studio import GenerateForm, Studio


class FakeClock:
    """A clock the test moves by hand (time itself, not a stand-in for a t2i part)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_burst_then_refusal_then_refill_per_client():
    clock = FakeClock()
    limiter = RateLimiter(per_minute=6, burst=3, clock=clock)
    for _ in range(3):
        limiter.acquire("a")
    with pytest.raises(RateLimited, match="try again in 10 s"):
        limiter.acquire("a")
    limiter.acquire("b")  # another client has its own bucket
    clock.now += 10  # 6 per minute: one token every 10 s
    limiter.acquire("a")
    with pytest.raises(RateLimited):
        limiter.acquire("a")


def test_zero_turns_the_limit_off():
    limiter = RateLimiter(per_minute=0)
    for _ in range(1000):
        limiter.acquire("a")


def test_studio_refuses_a_client_over_its_limit_and_still_serves_others(settings, engine):
    studio = Studio(dataclasses.replace(settings, rate_limit_per_minute=2), engine)
    form = GenerateForm(prompt="a red circle", steps=2, seed=1)
    for _ in range(2):
        assert list(studio.generate(form, "s1", client="10.0.0.1"))[-1].files
    with pytest.raises(RateLimited, match="too many requests"):
        list(studio.generate(form, "s1", client="10.0.0.1"))
    assert list(studio.generate(form, "s2", client="10.0.0.2"))[-1].files
