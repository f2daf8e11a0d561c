"""The poll schedule's arithmetic: probes while the estimate is young, bracketed samples.

The same schedule run against Redis and the simulator is in
``tests/integration/test_timing.py``.
"""

from __future__ import annotations

import pytest

from worker.job.timing import Estimate, first_poll_delay_for, next_poll_delay, sample_from


def test_the_first_poll_comes_early_while_the_estimate_is_young() -> None:
    young = [first_poll_delay_for(Estimate(100, n, 100), minimum=1) for n in range(4)]
    assert young == [10, 50, 75, 95]  # settled: less half the (default, 10 %) deviation
    settled = Estimate(100, 8, 100, deviation=4)
    assert first_poll_delay_for(settled, minimum=1) == 98


def test_polls_double_towards_the_estimate_then_step_and_grow_with_the_overshoot() -> None:
    estimate = Estimate(100, 0, 100)  # young: a deviation of 10 % is assumed

    def delay(elapsed: float) -> float:
        return next_poll_delay(elapsed=elapsed, estimate=estimate, minimum=1, maximum=60)

    assert delay(25) == 25  # probing: double the elapsed time ...
    assert delay(50) == 45  # ... but stop at the settled first-poll point (95)
    assert delay(95) == pytest.approx(40 / 3)  # then steps of 4/3 of the deviation
    assert delay(180) == 30  # growing with the overshoot past the expected span (120)
    assert delay(400) == 60  # never past the cap
    hinted = next_poll_delay(elapsed=95, estimate=estimate, minimum=1, maximum=60, hint=45)
    assert hinted == 45  # Retry-After is a floor


def test_a_sample_is_the_bracket_midpoint_or_what_a_first_hit_says_or_a_webhooks_time() -> None:
    assert sample_from(hit=100, last_miss=80) == (90, True)
    assert sample_from(hit=100, last_miss=None) == (50, False)  # a probe: sooner, by much
    settled = Estimate(100, 8, 100, deviation=6)
    assert sample_from(hit=100, last_miss=None, estimate=settled) == (85, False)
    assert sample_from(hit=100, last_miss=None, exact=True) == (100, True)
