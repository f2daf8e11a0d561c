"""The simulator's money faults: keys ignored, replies dropped or trickled, a scaled clock.

Each is a way the real world makes a submission ambiguous: the provider did the work (and
will bill it), and the client cannot tell. The billing figures the simulator reports
(``paid_twice``) are what the fleet's tests and benchmarks hold at zero.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from simulator import SimConfig
from simulator.testing import InProcessSimulator, SimulatorProcess
from tests.conftest import FakeClock

KEY = "sk-test-key-0001"
SUBMIT = "/v1/video/generations"
BASIC: dict[str, Any] = {
    "model": "doubao-seedance-2-0-720p",
    "prompt": "a red kite over a beach",
    "seconds": "5",
    "metadata": {"ratio": "16:9", "resolution": "720p"},
}

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_client(clock: FakeClock) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    sims: list[InProcessSimulator] = []

    def make(**knobs: Any) -> httpx.AsyncClient:
        knobs = {"seed": 7, "gen_time_mean": 10.0, "gen_time_jitter": 0.0, **knobs}
        sim = InProcessSimulator(SimConfig(**knobs), api_key=KEY, clock=clock)
        sims.append(sim)
        return sim.client

    yield make
    for sim in sims:
        await sim.__aexit__(None, None, None)


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


def test_every_nth_accepted_submit_drops_its_connection_after_creating_the_task(
    sim: SimulatorProcess,
) -> None:
    sim.configure(drop_reply_every=3)
    outcomes: list[str] = []
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for n in range(6):
            try:
                reply = http.post(
                    "/video/generations", json=BASIC, headers={"Idempotency-Key": f"j{n}"}
                )
                outcomes.append(str(reply.status_code))
            except httpx.RemoteProtocolError:
                outcomes.append("dropped")
    assert outcomes == ["200", "200", "dropped", "200", "200", "dropped"]
    found = sim.stats()
    assert found["submissions"] == 6  # the dropped ones exist at the provider
    assert found["dropped_replies"] == 2
    assert found["billed_tasks"] == 6


def test_a_trickled_reply_arrives_whole_but_a_byte_at_a_time(sim: SimulatorProcess) -> None:
    sim.configure(trickle_seconds=0.3)
    chunks: list[bytes] = []
    with (
        httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {KEY}"}) as http,
        http.stream("POST", "/video/generations", json=BASIC) as reply,
    ):
        chunks.extend(reply.iter_raw())
    body = b"".join(chunks)
    assert body.startswith(b'{"task_id":"task_')
    assert len(chunks) > len(body) // 2  # not one write: the bytes came one by one
