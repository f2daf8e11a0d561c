"""Per-key limits against a real redis-server: slots, the waiting line, rate, 429 learning."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import FakeClock
from worker.limits import Acquire, KeyLimits


@pytest.fixture
def limits(redis_client: redis.Redis, clock: FakeClock) -> KeyLimits:
    return KeyLimits(redis_client, clock=clock, cooldown_seconds=5.0)


# Slots ----------------------------------------------------------------------------------------


def test_slots_are_granted_up_to_the_limit_then_callers_wait_in_line(limits: KeyLimits) -> None:
    assert limits.acquire("k", "j1", limit=2) == Acquire(granted=True)
    assert limits.acquire("k", "j2", limit=2) == Acquire(granted=True)
    assert limits.acquire("k", "j3", limit=2) == Acquire(granted=False, position=1)
    assert limits.acquire("k", "j4", limit=2) == Acquire(granted=False, position=2)
    assert limits.in_use("k") == 2
    assert limits.waiting("k") == 2
    assert limits.holds("k", "j1")
    assert not limits.holds("k", "j3")


def test_taking_a_slot_you_already_hold_is_a_noop(limits: KeyLimits, clock: FakeClock) -> None:
    limits.acquire("k", "j1", limit=1)
    clock.advance(8)
    assert limits.acquire("k", "j1", limit=1) == Acquire(granted=True)
    assert limits.holds("k", "j1")
    assert limits.in_use("k") == 1
    assert limits.waiting("k") == 0


def test_releasing_a_slot_you_do_not_hold_changes_nothing(limits: KeyLimits) -> None:
    limits.acquire("k", "j1", limit=1)
    limits.acquire("k", "j2", limit=1)
    assert limits.release("k", "stranger", limit=1) == []
    assert limits.holds("k", "j1")
    assert limits.position("k", "j2") == 1
    assert limits.in_use("k") == 1


def test_release_hands_the_slot_to_the_next_waiter_at_once(limits: KeyLimits) -> None:
    limits.acquire("k", "j1", limit=1)
    limits.acquire("k", "j2", limit=1)
    limits.acquire("k", "j3", limit=1)
    assert limits.release("k", "j1", limit=1) == ["j2"]
    assert limits.holds("k", "j2")
    assert not limits.holds("k", "j1")
    assert limits.position("k", "j3") == 1
    # The waiter that was handed the slot finds it held when its nudge arrives.
    assert limits.acquire("k", "j2", limit=1) == Acquire(granted=True)


def test_waiters_are_served_in_arrival_order(limits: KeyLimits) -> None:
    limits.acquire("k", "holder", limit=1)
    for job in ("w1", "w2", "w3"):
        limits.acquire("k", job, limit=1)
    served = []
    current = "holder"
    for _ in range(3):
        (current,) = limits.release("k", current, limit=1)
        served.append(current)
    assert served == ["w1", "w2", "w3"]


def test_waiting_again_keeps_your_place_in_line(limits: KeyLimits) -> None:
    limits.acquire("k", "holder", limit=1)
    limits.acquire("k", "w1", limit=1)
    limits.acquire("k", "w2", limit=1)
    assert limits.acquire("k", "w1", limit=1) == Acquire(granted=False, position=1)
    assert limits.waiting("k") == 2
    assert limits.release("k", "holder", limit=1) == ["w1"]


def test_acquire_without_wait_does_not_join_the_line(limits: KeyLimits) -> None:
    limits.acquire("k", "j1", limit=1)
    assert limits.acquire("k", "j2", limit=1, wait=False) == Acquire(granted=False)
    assert limits.waiting("k") == 0
    assert limits.position("k", "j2") is None


def test_no_timer_takes_a_slot_however_long_the_holders_task_runs(
    limits: KeyLimits, clock: FakeClock
) -> None:
    limits.acquire("k", "j1", limit=1)
    clock.advance(6 * 3600)  # a provider may take hours; the task counts against the key
    assert limits.acquire("k", "j2", limit=1) == Acquire(granted=False, position=1)
    assert limits.grant_waiters("k", limit=1) == []
    assert limits.holds("k", "j1")
    assert limits.release("k", "j1", limit=1) == ["j2"]


def test_take_holds_a_slot_for_a_live_task_even_over_the_limit(limits: KeyLimits) -> None:
    limits.acquire("k", "j1", limit=1)
    limits.acquire("k", "w1", limit=1)
    assert limits.take("k", "adopted")  # its task exists at the provider already
    assert not limits.take("k", "adopted")  # taking twice changes nothing
    assert limits.take("k", "w1")  # a waiter whose task turned out to exist leaves the line
    assert limits.in_use("k") == 3
    assert limits.waiting("k") == 0
    assert sorted(limits.holders("k")) == ["adopted", "j1", "w1"]
    # Over the limit, releases free slots without handing them on until below it.
    assert limits.release("k", "j1", limit=1) == []


def test_grant_waiters_fills_every_free_slot_from_the_head_of_the_line(
    limits: KeyLimits,
) -> None:
    for job in ("a", "b", "c"):
        limits.acquire("k", job, limit=3)
    for job in ("w1", "w2", "w3", "w4"):
        limits.acquire("k", job, limit=3)
    assert limits.grant_waiters("k", limit=5) == ["w1", "w2"]  # the limit was raised
    assert limits.grant_waiters("k", limit=5) == []
    assert limits.in_use("k") == 5
    assert limits.position("k", "w3") == 1


def test_a_newcomer_does_not_pass_waiters_when_a_slot_frees_silently(
    limits: KeyLimits,
) -> None:
    limits.acquire("k", "holder", limit=1)
    limits.acquire("k", "w1", limit=1)
    result = limits.acquire("k", "newcomer", limit=2)  # the limit was raised meanwhile
    assert result == Acquire(granted=False, position=1, also_granted=("w1",))
    assert limits.holds("k", "w1")


def test_push_front_gives_up_the_slot_and_puts_the_job_at_the_head_of_the_line(
    limits: KeyLimits,
) -> None:
    limits.acquire("k", "j1", limit=1)
    limits.acquire("k", "w1", limit=1)
    limits.acquire("k", "w2", limit=1)
    limits.push_front("k", "j1")
    assert not limits.holds("k", "j1")
    assert [limits.position("k", j) for j in ("j1", "w1", "w2")] == [1, 2, 3]
    limits.push_front("k", "w2")  # a waiter can be moved to the head too
    assert [limits.position("k", j) for j in ("w2", "j1", "w1")] == [1, 2, 3]
    assert limits.grant_waiters("k", limit=1) == ["w2"]


def test_a_job_put_back_in_line_goes_before_later_arrivals(limits: KeyLimits) -> None:
    limits.acquire("k", "j1", limit=1)
    limits.push_front("k", "j1")
    assert limits.acquire("k", "late", limit=1) == Acquire(
        granted=False, position=1, also_granted=("j1",)
    )


def test_remove_waiter_takes_a_canceled_job_out_of_line(limits: KeyLimits) -> None:
    limits.acquire("k", "j1", limit=1)
    limits.acquire("k", "canceled", limit=1)
    limits.acquire("k", "w2", limit=1)
    assert limits.remove_waiter("k", "canceled")
    assert not limits.remove_waiter("k", "canceled")
    assert limits.position("k", "canceled") is None
    assert limits.release("k", "j1", limit=1) == ["w2"]


def test_release_of_a_waiting_job_gives_up_its_place(limits: KeyLimits) -> None:
    limits.acquire("k", "j1", limit=1)
    limits.acquire("k", "gone", limit=1)
    limits.acquire("k", "w2", limit=1)
    assert limits.release("k", "gone", limit=1) == []
    assert limits.release("k", "j1", limit=1) == ["w2"]


def test_a_lowered_limit_stops_new_grants_but_takes_no_slot_away(limits: KeyLimits) -> None:
    for job in ("a", "b", "c", "d"):
        limits.acquire("k", job, limit=4)
    assert limits.on_rate_limited("k", limit=4) == 2
    assert limits.holds("k", "d")
    assert limits.acquire("k", "w1", limit=4).granted is False
    assert limits.release("k", "a", limit=4) == []  # 3 in use, limit 2
    assert limits.release("k", "b", limit=4) == []
    assert limits.release("k", "c", limit=4) == ["w1"]
    assert limits.in_use("k") == 2
