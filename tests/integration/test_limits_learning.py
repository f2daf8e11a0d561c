"""Per-key limits against a real redis-server: the learned limit, the request rate, fairness
between keys, what the limits show, and their plumbing.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import FakeClock
from worker.limits import Acquire, AdaptiveLimit, KeyLimits


@pytest.fixture
def limits(redis_client: redis.Redis, clock: FakeClock) -> KeyLimits:
    return KeyLimits(redis_client, clock=clock, cooldown_seconds=5.0)


def test_a_429_halves_the_effective_limit_once_per_cooldown(
    limits: KeyLimits, clock: FakeClock
) -> None:
    assert limits.effective_limit("k", limit=10) == 10
    assert limits.on_rate_limited("k", limit=10) == 5
    clock.advance(1)
    assert limits.on_rate_limited("k", limit=10) == 5  # same overload, counted once
    assert limits.on_rate_limited("k", limit=10) == 5
    clock.advance(5)
    assert limits.on_rate_limited("k", limit=10) == 2
    assert limits.effective_limit("k", limit=10) == 2


def test_the_effective_limit_never_drops_below_one(limits: KeyLimits, clock: FakeClock) -> None:
    for _ in range(6):
        limits.on_rate_limited("k", limit=4)
        clock.advance(6)
    assert limits.effective_limit("k", limit=4) == 1


def test_successes_raise_the_limit_by_one_up_to_the_configured_limit(
    limits: KeyLimits, clock: FakeClock
) -> None:
    limits.on_rate_limited("k", limit=4)  # 2
    assert [limits.on_success("k", limit=4) for _ in range(3)] == [2, 2, 2]  # in cooldown
    clock.advance(6)
    assert limits.on_success("k", limit=4) == 3  # a run of 3 and the cooldown is over
    assert [limits.on_success("k", limit=4) for _ in range(3)] == [3, 3, 3]
    clock.advance(6)
    # 4 drew the 429: the key goes back to it only after sustained success (the probe).
    assert limits.on_success("k", limit=4) == 3
    clock.advance(300)
    assert limits.on_success("k", limit=4) == 4
    clock.advance(6)
    assert [limits.on_success("k", limit=4) for _ in range(5)] == [4] * 5


def test_a_429_with_the_in_flight_count_drops_the_limit_to_that_cap_and_stays_below_it(
    limits: KeyLimits, clock: FakeClock
) -> None:
    assert limits.on_rate_limited("k", limit=15, in_flight=10) == 10  # not 7: the cap is known
    for _ in range(20):
        clock.advance(6)
        for _ in range(3):
            limits.on_success("k", limit=15)
    assert limits.effective_limit("k", limit=15) == 10  # no knocking on the cap it met
    clock.advance(300)
    for _ in range(3):
        limits.on_success("k", limit=15)
    assert limits.effective_limit("k", limit=15) == 11  # a slow probe after sustained success


def test_a_429_restarts_the_run_of_successes(limits: KeyLimits, clock: FakeClock) -> None:
    limits.on_rate_limited("k", limit=8)  # 4
    clock.advance(1)
    limits.on_success("k", limit=8)
    limits.on_success("k", limit=8)
    assert limits.on_rate_limited("k", limit=8) == 4  # within the cooldown: no cut
    clock.advance(6)
    assert limits.on_success("k", limit=8) == 4  # would be 5 had the run not restarted
    assert limits.on_success("k", limit=8) == 4
    assert limits.on_success("k", limit=8) == 5


def test_the_effective_limit_follows_a_lowered_configuration(limits: KeyLimits) -> None:
    limits.on_rate_limited("k", limit=10)  # learned 5
    assert limits.effective_limit("k", limit=3) == 3
    assert limits.effective_limit("k", limit=10) == 5


def test_every_worker_applies_the_limit_another_worker_learned(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    one = KeyLimits(redis_client, clock=clock)
    other = KeyLimits(redis.Redis(connection_pool=redis_client.connection_pool), clock=clock)
    one.on_rate_limited("k", limit=2)
    assert other.effective_limit("k", limit=2) == 1
    assert other.acquire("k", "j1", limit=2).granted
    assert not other.acquire("k", "j2", limit=2).granted


def test_a_learned_limit_is_forgotten_when_nothing_refreshes_it(
    redis_client: redis.Redis,
) -> None:
    adaptive = AdaptiveLimit(redis_client, forget_seconds=0.2)
    assert adaptive.on_rate_limited("k", limit=4) == 2
    deadline = time.monotonic() + 10
    while adaptive.effective_limit("k", limit=4) != 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert adaptive.effective_limit("k", limit=4) == 4


def test_throttle_lets_a_burst_through_then_defers_the_next_request(
    limits: KeyLimits, clock: FakeClock
) -> None:
    waits = [limits.throttle("k", rate=2, burst=3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.5)
    clock.advance(0.5)
    assert limits.throttle("k", rate=2, burst=3) == 0.0


def test_a_deferred_request_is_not_counted_against_the_rate(
    limits: KeyLimits, clock: FakeClock
) -> None:
    assert limits.throttle("k", rate=1, burst=1) == 0.0
    for _ in range(5):
        assert limits.throttle("k", rate=1, burst=1) == pytest.approx(1.0)
    clock.advance(1)
    assert limits.throttle("k", rate=1, burst=1) == 0.0
    assert limits.snapshot("k", limit=1)["requests_last_minute"] == 2


def test_after_the_burst_requests_go_at_the_configured_rate(
    limits: KeyLimits, clock: FakeClock
) -> None:
    sent = 0
    for _ in range(100):  # 10 simulated seconds in steps of 0.1 s
        while limits.throttle("k", rate=4, burst=2) == 0.0:
            sent += 1
        clock.advance(0.1)
    assert sent == 2 + 4 * 10 - 1  # the burst, then one every 0.25 s


def test_throttle_defaults_the_burst_to_one_seconds_worth(limits: KeyLimits) -> None:
    waits = [limits.throttle("k", rate=5) for _ in range(6)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] > 0


def test_a_retry_after_pauses_every_request_of_the_key(limits: KeyLimits, clock: FakeClock) -> None:
    limits.on_rate_limited("k", limit=4, retry_after=3)
    assert limits.throttle("k", rate=100) == pytest.approx(3.0)
    clock.advance(2)
    limits.on_rate_limited("k", limit=4, retry_after=0.5)  # never shortens the pause
    assert limits.throttle("k", rate=100) == pytest.approx(1.0)
    clock.advance(1)
    assert limits.throttle("k", rate=100) == 0.0
    assert limits.throttle("other", rate=100) == 0.0


def test_a_full_key_with_waiters_does_not_affect_another_key(
    limits: KeyLimits, clock: FakeClock
) -> None:
    for n in range(5):
        limits.acquire("busy", f"b{n}", limit=2)
    limits.on_rate_limited("busy", limit=2, retry_after=30)
    while limits.throttle("busy", rate=1, burst=1) == 0.0:
        pass
    assert limits.acquire("calm", "c1", limit=2) == Acquire(granted=True)
    assert limits.acquire("calm", "c2", limit=2) == Acquire(granted=True)
    assert limits.effective_limit("calm", limit=2) == 2
    assert limits.throttle("calm", rate=1, burst=1) == 0.0
    assert limits.release("calm", "c1", limit=2) == []
    assert limits.snapshot("calm", limit=2)["waiting"] == 0
    assert limits.snapshot("busy", limit=2)["waiting"] == 3


def test_snapshot_reports_limits_slots_and_recent_traffic(
    limits: KeyLimits, clock: FakeClock
) -> None:
    limits.acquire("k", "j1", limit=4)
    limits.acquire("k", "j2", limit=4)
    for _ in range(3):
        limits.throttle("k", rate=100)
    limits.on_rate_limited("k", limit=4)
    assert limits.snapshot("k", limit=4) == {
        "configured": 4,
        "effective": 2,
        "in_use": 2,
        "waiting": 0,
        "requests_last_minute": 3,
        "rate_limited_last_hour": 1,
        "paused": "",
        "paused_since": None,
    }


def test_snapshot_forgets_requests_after_a_minute_and_429s_after_an_hour(
    limits: KeyLimits, clock: FakeClock
) -> None:
    limits.on_rate_limited("k", limit=4)
    limits.throttle("k", rate=100)
    clock.advance(30)
    limits.throttle("k", rate=100)
    assert limits.snapshot("k", limit=4)["requests_last_minute"] == 2
    clock.advance(45)
    assert limits.snapshot("k", limit=4)["requests_last_minute"] == 1
    clock.advance(60)
    assert limits.snapshot("k", limit=4)["requests_last_minute"] == 0
    clock.advance(1800)
    limits.on_rate_limited("k", limit=4)
    assert limits.snapshot("k", limit=4)["rate_limited_last_hour"] == 2
    clock.advance(1900)
    assert limits.snapshot("k", limit=4)["rate_limited_last_hour"] == 1


def test_aliases_seen_lists_every_alias_that_used_the_limits(limits: KeyLimits) -> None:
    assert limits.aliases_seen() == []
    limits.acquire("tenant-b", "j1", limit=1)
    limits.throttle("default", rate=1)
    limits.on_rate_limited("tenant-a", limit=1)
    assert limits.aliases_seen() == ["default", "tenant-a", "tenant-b"]


def test_a_client_that_returns_bytes_works_the_same(redis_url: str, clock: FakeClock) -> None:
    raw = redis.Redis.from_url(redis_url)  # decode_responses=False
    try:
        limits = KeyLimits(raw, clock=clock)
        limits.acquire("k", "j1", limit=1)
        assert limits.acquire("k", "j2", limit=1) == Acquire(granted=False, position=1)
        assert limits.release("k", "j1", limit=1) == ["j2"]
        assert limits.aliases_seen() == ["k"]
        assert limits.snapshot("k", limit=1)["in_use"] == 1
    finally:
        raw.close()


@pytest.mark.parametrize("alias", ["", "a}b", "a{b", "has space", "x" * 101])
def test_an_alias_that_could_break_key_names_is_refused(limits: KeyLimits, alias: str) -> None:
    with pytest.raises(ValueError, match="alias"):
        limits.acquire(alias, "j1", limit=1)


def test_nonsense_limits_are_refused(limits: KeyLimits) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limits.acquire("k", "j1", limit=0)
    with pytest.raises(ValueError, match="rate"):
        limits.throttle("k", rate=0)
    with pytest.raises(ValueError, match="holder"):
        limits.release("k", "", limit=1)


def test_limits_built_with_the_settings_lookups_find_each_aliases_limit_and_rate(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    limits = KeyLimits(
        redis_client,
        clock=clock,
        limit_for={"one": 1, "two": 2}.__getitem__,
        rate_for={"one": 1.0, "two": 100.0}.__getitem__,
    )
    assert limits.acquire("one", "a").granted and not limits.acquire("one", "b").granted
    assert limits.acquire("two", "c").granted and limits.acquire("two", "d").granted
    assert limits.snapshot("two")["configured"] == 2
    assert limits.throttle("one") == 0.0 and limits.throttle("one") > 0  # one request a second
    assert limits.release("one", "a") == ["b"]


def test_limits_without_a_lookup_ask_for_the_limit(limits: KeyLimits) -> None:
    with pytest.raises(TypeError, match="limit"):
        limits.acquire("k", "j1")
