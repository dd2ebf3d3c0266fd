from __future__ import annotations

from shared.ratelimit import Pacer, RateLimiter, TokenBucket


def test_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket(rate=10, capacity=20, updated=0.0)
    assert [bucket.take(1, now=0.0) for _ in range(20)] == [0.0] * 20
    assert bucket.take(1, now=0.0) > 0
    assert bucket.take(1, now=0.1) == 0.0  # 0.1 s at 10/s refills one token


def test_a_full_bucket_lets_an_oversized_request_through_once() -> None:
    bucket = TokenBucket(rate=2, capacity=4, updated=0.0)
    assert bucket.take(100, now=0.0) == 0.0
    assert bucket.take(1, now=0.0) > 0


def test_limiter_keeps_one_bucket_per_source_and_follows_rate_changes() -> None:
    limiter = RateLimiter(default_rate=1)
    assert limiter.take(1, None, 2) == 0.0
    assert limiter.take(1, None, 1) > 0
    assert limiter.take(2, None, 1) == 0.0  # another source has its own bucket
    assert limiter.take(1, 1000, 1) == 0.0  # a new rate for the source: a new bucket


def test_pacer_gives_each_channel_a_second_of_burst_then_paces_it() -> None:
    pacer = Pacer({"email": 20.0}, default=1000.0)
    assert sum(pacer.ready("email") for _ in range(30)) == 20  # a second's worth at once
    assert 0 < pacer.delay("email") <= 1 / 20  # then one turn every 0.05 s
    assert all(pacer.ready("webhook") for _ in range(30))  # another channel, its own turns


def test_pacer_ready_takes_a_turn_only_when_one_is_free() -> None:
    pacer = Pacer({"email": 2.0}, default=1000.0)
    assert [pacer.ready("email") for _ in range(3)] == [True, True, False]
    assert pacer.delay("email") > 0.4  # the turns ready() took count


def test_wait_time_says_when_a_token_is_free_and_takes_none() -> None:
    bucket = TokenBucket(rate=2, capacity=2, updated=0.0)
    assert bucket.wait_time(now=0.0) == 0.0
    assert bucket.take(2, now=0.0) == 0.0
    assert bucket.wait_time(now=0.0) == 0.5
    assert bucket.wait_time(now=0.25) == 0.25
    assert bucket.wait_time(now=0.5) == 0.0
    assert bucket.take(1, now=0.5) == 0.0  # wait_time took nothing


def test_pacer_delay_and_rate_per_channel() -> None:
    pacer = Pacer({"email": 1.0}, default=50.0)
    assert (pacer.rate("email"), pacer.rate("webhook")) == (1.0, 50.0)
    assert pacer.delay("email") == 0.0
    assert pacer.ready("email")
    assert 0.9 < pacer.delay("email") <= 1.0
