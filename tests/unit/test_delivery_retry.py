"""Retry delays: exponential backoff with ±50 % jitter (README, TRAYECTO_DELIVERY_RETRY_BASE_S)."""

from __future__ import annotations

import statistics

import pytest

from services.delivery.worker import retry_delay


@pytest.mark.parametrize("attempt", [1, 2, 3, 5])
def test_delays_vary_within_half_to_one_and_a_half_of_the_backoff(attempt: int) -> None:
    backoff = 30.0 * 2 ** (attempt - 1)
    delays = [retry_delay(30.0, attempt) for _ in range(2000)]
    assert all(0.5 * backoff <= d <= 1.5 * backoff for d in delays)
    # Spread over the whole range, not bunched: a burst's retries do not come back together.
    assert min(delays) < 0.55 * backoff
    assert max(delays) > 1.45 * backoff
    assert len(set(delays)) > 1900
    assert statistics.mean(delays) == pytest.approx(backoff, rel=0.05)


def test_the_jitter_bounds_are_reached_and_the_backoff_doubles() -> None:
    asked: list[tuple[float, float]] = []

    def lowest(low: float, high: float) -> float:
        asked.append((low, high))
        return low

    def highest(low: float, high: float) -> float:
        return high

    assert [retry_delay(2.0, n, lowest) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert [retry_delay(2.0, n, highest) for n in (1, 2, 3, 4)] == [3.0, 6.0, 12.0, 24.0]
    assert set(asked) == {(0.5, 1.5)}
