"""Pauses in the per-key limits, against a real redis-server on a stepped clock: account
holds (a key, or one model of it), the provider breaker, and the probes through them."""

from __future__ import annotations

import itertools

import pytest
import redis

from tests.conftest import FakeClock
from worker.limits import KeyLimits

PROBE = 300.0


@pytest.fixture
def limits(redis_client: redis.Redis, clock: FakeClock) -> KeyLimits:
    found = KeyLimits(
        redis_client,
        clock=clock,
        limit_for=lambda alias: 2,
        rate_for=lambda alias: 1000.0,
        route_for=lambda alias: "relaydance-route",
    )
    found.configure_pauses(probe_every=PROBE, breaker_failures=3)
    return found


# Account holds --------------------------------------------------------------------------------


def test_a_held_key_grants_no_slot_and_its_line_keeps_its_order(limits: KeyLimits) -> None:
    assert limits.acquire("k", "j1").granted
    limits.hold("k", kind="insufficient_credits", reason="HTTP 402", holder="j1")
    assert limits.release("k", "j1") == []  # the freed slot is not handed on
    waits = [limits.acquire("k", job) for job in ("j2", "j3")]
    assert [(a.granted, a.position, a.paused) for a in waits] == [
        (False, 1, "held"),
        (False, 2, "held"),
    ]
    assert limits.grant_waiters("k") == []
    assert limits.gate("k", "j2", submit=True).reason == "held"


def test_one_probe_passes_per_interval_and_its_success_reopens_the_line(
    limits: KeyLimits, clock: FakeClock
) -> None:
    limits.hold("k", kind="unauthorized", reason="HTTP 401 revoked")
    for job in ("j1", "j2", "j3"):
        limits.acquire("k", job)
    assert limits.probes_due("k") == []
    clock.advance(PROBE)
    assert limits.probes_due("k") == ["j1"]  # the head of the line is nudged
    first = limits.acquire("k", "j1")
    assert first.granted and first.probe
    assert not limits.acquire("k", "j2").granted  # one probe per interval
    gate = limits.gate("k", "j1", submit=True)
    assert gate.wait == 0 and gate.probe
    assert limits.lift("k").kind == "unauthorized"
    assert sorted(limits.grant_waiters("k")) == ["j2"]  # a slot was free: the line moves


def test_a_refused_probe_moves_the_next_probe_a_whole_interval_on(
    limits: KeyLimits, clock: FakeClock
) -> None:
    limits.hold("k", kind="insufficient_credits", reason="402")
    clock.advance(PROBE)
    assert limits.acquire("k", "j1").probe
    clock.advance(10)
    new, refusals = limits.hold("k", kind="insufficient_credits", reason="402", holder="j1")
    assert (new, refusals) == (False, 2)
    (hold,) = limits.paused("k")
    assert hold.probe_at == pytest.approx(clock() + PROBE)
    assert limits.acquire("k", "j2").paused == "held"


def test_a_revoked_key_stops_reads_and_an_empty_balance_does_not(limits: KeyLimits) -> None:
    limits.hold("k", kind="insufficient_credits", reason="402")
    assert limits.gate("k", "j1").wait == 0  # a poll goes on: running tasks finish
    assert limits.gate("k", "j1", submit=True).reason == "held"
    limits.hold("k", kind="unauthorized", reason="401")  # stronger: it replaces the kind
    assert limits.gate("k", "j1").reason == "held"


def test_a_held_model_parks_its_jobs_off_the_line_and_the_keys_other_models_go_on(
    limits: KeyLimits,
) -> None:
    limits.hold("k", kind="model", reason="may not use m1", model="m1")
    parked = limits.acquire("k", "j1", model="m1")
    assert (parked.granted, parked.position, parked.paused) == (False, None, "model")
    assert parked.wait == pytest.approx(PROBE)
    assert limits.acquire("k", "j2", model="m2").granted
    assert limits.lift("k", model="m1").parked == ("j1",)
    assert limits.acquire("k", "j1", model="m1").granted


def test_an_operators_pause_is_never_probed_and_only_a_resume_lifts_it(
    limits: KeyLimits, clock: FakeClock
) -> None:
    limits.hold("k", kind="operator", reason="paused by an operator")
    limits.acquire("k", "j1")
    clock.advance(10 * PROBE)
    assert limits.probes_due("k") == []
    assert limits.acquire("k", "j1").paused == "held"
    (hold,) = limits.paused("k")
    assert hold.probe_at is None
    assert limits.lift("k").lifted


# The provider breaker -----------------------------------------------------------------------


def test_consecutive_failures_open_the_breaker_and_a_success_resets_the_count(
    limits: KeyLimits,
) -> None:
    assert limits.call_failed("k", reason="503") == "counted"
    assert limits.call_failed("k", reason="503") == "counted"
    assert limits.call_succeeded("k") is None  # not open; the count starts again
    assert [limits.call_failed("k", reason="503") for _ in range(3)] == [
        "counted",
        "counted",
        "opened",
    ]
    assert limits.provider_down("k") and limits.provider_unwell("k")
    assert limits.gate("k", "j1").reason == "breaker"
    assert limits.acquire("k", "j1").paused == "breaker"


def test_half_open_probes_double_their_wait_up_to_the_probe_interval(
    limits: KeyLimits, clock: FakeClock
) -> None:
    for _ in range(3):
        limits.call_failed("k", reason="connect refused")
    waits = []
    for n in range(9):
        state = limits.breakers.state("relaydance-route")
        assert state is not None
        clock.advance(state.probe_at - clock())
        gate = limits.gate("k", f"probe{n}")
        assert gate.probe and gate.wait == 0
        assert limits.gate("k", "other").reason == "breaker"  # one probe at a time
        limits.call_failed("k", reason="still down", holder=f"probe{n}")
        after = limits.breakers.state("relaydance-route")
        assert after is not None
        waits.append(after.probe_at - clock())
    assert waits[-1] <= PROBE * 1.2 and waits[-1] >= PROBE * 0.8
    assert all(b >= a * 1.2 for a, b in itertools.pairwise(waits[:5]))


def test_closing_the_breaker_keeps_the_outage_out_of_a_jobs_deadline(
    limits: KeyLimits, clock: FakeClock
) -> None:
    start = clock()
    clock.advance(100)
    for _ in range(3):
        limits.call_failed("k", reason="503")
    clock.advance(50)
    assert limits.outage_seconds("k", start=start, end=clock()) == pytest.approx(50)
    assert limits.call_succeeded("k") is not None
    clock.advance(100)
    assert limits.outage_seconds("k", start=start, end=clock()) == pytest.approx(50)
    assert limits.gate("k", "j1").wait == 0
