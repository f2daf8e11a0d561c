"""The simulator's idempotency keys, concurrency cap and injected faults."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

import simulator.api
from tests.conftest import FakeClock
from tests.simulator_requests import BASIC, KEY, SUBMIT, fp, with_changes
from tests.unit.simulator.content import OTHER_KEY, Client, submit

pytestmark = pytest.mark.anyio


async def test_a_repeated_idempotency_key_returns_the_original_task_and_counts_a_duplicate(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(honour_idempotency=True)
    first = await submit(client, idem="job-1")
    again = await submit(client, idem="job-1")
    other = await submit(client, idem="job-2")
    assert again.status_code == 200
    assert again.json()["task_id"] == first.json()["task_id"]
    assert other.json()["task_id"] != first.json()["task_id"]
    stats = (await client.get("/_sim/stats")).json()
    assert stats["submissions"] == 2
    assert stats["duplicates"] == 1
    assert stats["duplicates_by_idempotency_key"] == {"job-1": 1}
    assert stats["keys"][fp(KEY)]["duplicates"] == 1
    debug = (await client.get(f"/_sim/tasks/{first.json()['task_id']}")).json()
    assert debug["idempotency_key"] == "job-1"


async def test_an_idempotency_key_is_scoped_to_the_api_key(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(honour_idempotency=True)
    mine = (await submit(client, idem="job-1")).json()["task_id"]
    theirs = (
        await client.post(
            SUBMIT,
            json=BASIC,
            headers={"Idempotency-Key": "job-1", "Authorization": f"Bearer {OTHER_KEY}"},
        )
    ).json()["task_id"]
    assert mine != theirs
    assert (await client.get("/_sim/stats")).json()["duplicates"] == 0


async def test_an_idempotency_key_reused_with_another_body_is_a_conflict(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(honour_idempotency=True)
    await submit(client, idem="job-1")
    changed = with_changes(prompt="something else")
    response = await submit(client, changed, idem="job-1")
    assert response.status_code == 409


async def test_the_concurrency_cap_answers_429_with_retry_after_until_a_task_finishes(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(concurrency_cap=2, retry_after=3)
    assert [(await submit(client)).status_code for _ in range(2)] == [200, 200]
    refused = await submit(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    other = await client.post(SUBMIT, json=BASIC, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.status_code == 200  # the cap is per key
    clock.advance(11)
    assert (await submit(client)).status_code == 200
    stats = (await client.get("/_sim/stats")).json()
    assert stats["rate_limited"] == 1
    assert stats["keys"][fp(KEY)] == {
        "submissions": 3,
        "duplicates": 0,
        "rate_limited": 1,
        "peak_in_flight": 2,
        "in_flight": 1,
    }


async def test_retry_after_zero_means_the_time_until_a_slot_frees(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(concurrency_cap=1, retry_after=0)
    await submit(client)
    clock.advance(2.5)
    assert (await submit(client)).headers["Retry-After"] == "8"


async def test_a_duplicate_submit_is_answered_even_when_the_key_is_full(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(concurrency_cap=1, honour_idempotency=True)
    first = (await submit(client, idem="job-1")).json()["task_id"]
    again = await submit(client, idem="job-1")
    assert again.status_code == 200
    assert again.json()["task_id"] == first


async def test_peak_in_flight_counts_tasks_not_yet_final(client: Client, clock: FakeClock) -> None:
    for _ in range(5):
        await submit(client)
    clock.advance(11)
    await submit(client)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["peak_in_flight_by_key"] == {fp(KEY): 5}
    assert stats["in_flight_by_key"] == {fp(KEY): 1}
    assert stats["submissions_by_key"] == {fp(KEY): 6}


async def test_stats_show_key_fingerprints_never_the_key(client: Client) -> None:
    await submit(client)
    text = (await client.get("/_sim/stats")).text
    assert KEY not in text
    assert fp(KEY) in text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBMIT),
        ("GET", f"{SUBMIT}/task_x"),
        ("POST", "/v1/files"),
        ("POST", "/v1/images/generations"),
    ],
)
async def test_error_5xx_rate_one_fails_every_v1_endpoint(
    make_client: Callable[..., Client], method: str, path: str
) -> None:
    client = make_client(error_5xx_rate=1.0)
    response = await client.request(method, path, json=BASIC)
    assert response.status_code in (500, 502, 503)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["errors_5xx"] == 1
    assert stats["submissions"] == 0


async def test_a_lost_submit_response_leaves_a_task_that_a_retry_with_the_same_key_finds(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(honour_idempotency=True)
    await client.post("/_sim/config", json={"lost_response_rate": 1.0})
    lost = await submit(client, idem="job-9")
    assert lost.status_code == 502
    await client.post("/_sim/config", json={"lost_response_rate": 0.0})
    retry = await submit(client, idem="job-9")
    assert retry.status_code == 200
    stats = (await client.get("/_sim/stats")).json()
    assert stats["submissions"] == 1
    assert stats["duplicates"] == 1
    assert stats["lost_responses"] == 1


async def test_latency_delays_every_v1_response(
    make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(simulator.api, "asyncio", SimpleNamespace(sleep=record))
    client = make_client(latency=0.25)
    await submit(client)
    await client.get(f"{SUBMIT}/task_x")
    await client.get("/_sim/stats")
    assert slept == [0.25, 0.25]
