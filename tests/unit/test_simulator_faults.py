"""The simulator's money faults: keys ignored, replies dropped or trickled, a scaled clock.

Each is a way the real world makes a submission ambiguous: the provider did the work (and
will bill it), and the client cannot tell. The billing figures the simulator reports
(``paid_twice``) are what the fleet's tests and benchmarks hold at zero. Dropped and
trickled replies need real sockets: they are in tests/integration/test_simulator_process.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import FakeClock
from tests.simulator_requests import BASIC, SUBMIT

pytestmark = pytest.mark.anyio


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get("/_sim/stats")).json()
    return result


async def test_by_default_a_repeated_idempotency_key_creates_and_bills_a_second_task(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client()
    headers = {"Idempotency-Key": "job-1"}
    first = (await client.post(SUBMIT, json=BASIC, headers=headers)).json()["task_id"]
    second = (await client.post(SUBMIT, json=BASIC, headers=headers)).json()["task_id"]
    assert first != second
    found = await stats(client)
    assert (found["billed_tasks"], found["paid_twice"], found["extra_billed_tasks"]) == (2, 1, 1)
    assert found["duplicates"] == 0  # nothing was recognised as a repeat


async def test_a_failed_task_is_not_billed_so_a_failed_first_try_is_not_paid_twice(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(failure_rate=1.0)
    headers = {"Idempotency-Key": "job-1"}
    await client.post(SUBMIT, json=BASIC, headers=headers)
    await client.post("/_sim/config", json={"failure_rate": 0.0})
    await client.post(SUBMIT, json=BASIC, headers=headers)
    found = await stats(client)
    assert (found["billed_tasks"], found["paid_twice"]) == (1, 0)


async def test_honouring_keys_replays_the_first_task_and_bills_once(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(honour_idempotency=True)
    headers = {"Idempotency-Key": "job-1"}
    first = (await client.post(SUBMIT, json=BASIC, headers=headers)).json()["task_id"]
    second = (await client.post(SUBMIT, json=BASIC, headers=headers)).json()["task_id"]
    assert first == second
    assert (await stats(client))["paid_twice"] == 0


async def test_the_time_scale_shortens_generation_and_retry_after_together(
    make_client: Callable[..., httpx.AsyncClient], clock: FakeClock
) -> None:
    client = make_client(gen_time_mean=100.0, time_scale=0.1, concurrency_cap=1, retry_after=4)
    task_id = (await client.post(SUBMIT, json=BASIC)).json()["task_id"]
    refused = await client.post(SUBMIT, json=BASIC)
    assert refused.status_code == 429
    assert float(refused.headers["Retry-After"]) == pytest.approx(0.4)
    clock.advance(9.9)
    assert (await client.get(f"{SUBMIT}/{task_id}")).json()["status"] == "running"
    clock.advance(0.2)
    assert (await client.get(f"{SUBMIT}/{task_id}")).json()["status"] == "succeeded"


async def test_an_unscaled_retry_after_stays_whole_seconds(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(concurrency_cap=1, retry_after=2.5)
    await client.post(SUBMIT, json=BASIC)
    assert (await client.post(SUBMIT, json=BASIC)).headers["Retry-After"] == "3"
