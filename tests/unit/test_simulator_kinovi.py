"""The simulator's Kinovi dialect: its routes, its strict body checks, its task record and
webhook envelope, and the same faults and limits as RelayDance's routes (dropped and
trickled replies, which need a real socket, in tests/integration/test_simulator_process.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from simulator.testing import InProcessSimulator
from tests.conftest import FakeClock
from tests.seed_bodies import (
    KINOVI_FIRST_AND_LAST_FRAME,
    KINOVI_IMAGE_TO_VIDEO,
    KINOVI_OMNI_ALL_MATERIALS,
    KINOVI_OMNI_REFERENCE,
    KINOVI_TEXT_TO_VIDEO,
)

KEY = "kin-test-key-0001"
CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
BASIC = KINOVI_TEXT_TO_VIDEO

pytestmark = pytest.mark.anyio


@pytest.fixture
def make_sim(make_sim: Callable[..., InProcessSimulator]) -> Callable[..., InProcessSimulator]:
    """Kinovi's key, and no webhooks unless a test asks for them."""
    return functools.partial(make_sim, KEY, webhooks=False)


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get("/_sim/stats")).json()
    return result


@pytest.mark.parametrize(
    "body",
    [KINOVI_TEXT_TO_VIDEO, KINOVI_IMAGE_TO_VIDEO, KINOVI_FIRST_AND_LAST_FRAME,
     KINOVI_OMNI_REFERENCE, KINOVI_OMNI_ALL_MATERIALS],
)  # fmt: skip
async def test_every_documented_body_is_accepted_with_a_task_id(
    make_sim: Callable[..., InProcessSimulator], body: dict[str, Any]
) -> None:
    answer = await make_sim().client.post(CREATE, json=body)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"taskId"}
    assert answer.json()["taskId"].startswith("task_")


def _with(**inputs: Any) -> dict[str, Any]:
    return {"model": "seedance-20", "inputs": {"prompt": "p", "duration": "5", **inputs}}


@pytest.mark.parametrize(
    ("body", "words"),
    [({**BASIC, "callback_url": "https://h/x"}, "callback_url: unknown field"),
     ({**BASIC, "model": "doubao-seedance-2-0-720p"}, "model: must be one of"),
     ({"model": "seedance-20"}, "inputs: is required"),
     (_with(resolution="480p"), "inputs.resolution: unknown field"),
     (_with(callBackUrl="https://h/x"), "inputs.callBackUrl: unknown field"),
     (_with(duration=5), 'must be a string such as "5"'),
     (_with(duration="16"), 'must be "4" to "15"'),
     (_with(aspectRatio="2:1"), "inputs.aspectRatio"),
     (_with(outputResolution="1080p"), "inputs.outputResolution"),
     (_with(upscaleResolution="8k"), "inputs.upscaleResolution"),
     (_with(mode="omni"), "inputs.mode"),
     (_with(prompt="x" * 4001), "at most 4000"),
     (_with(prompt=""), "required for text-to-video"),
     (_with(urls=["https://e/1.jpg"] * 3), "1 or 2 images"),
     (_with(urls=["https://e/v.mp4"]), "1 or 2 images"),
     (_with(urls=["/local/a.jpg"]), "public http(s) URLs"),
     (_with(urls=["https://e/1.jpg"], prompt="@image1 runs"), "only available in reference"),
     (_with(mode="reference", audioUrls=["https://e/a.mp3"]), "at least one image or video"),
     (_with(mode="reference", urls=["https://e/1.jpg"], prompt=""), "required in reference"),
     (_with(mode="reference", urls=["https://e/i.jpg"] * 10), "at most 9 image"),
     (_with(mode="reference", urls=["https://e/v.mp4"] * 4), "at most 3 video"),
     (_with(mode="reference", urls=["https://e/i.jpg"], audioUrls=["https://e/a.mp3"] * 4),
      "at most 3 audio"),
     (_with(mode="reference", urls=["https://e/i.jpg"], prompt="@Video1 moves"),
      "@Video1 cites a missing video")],
)  # fmt: skip
async def test_bodies_outside_kinovis_format_are_refused_with_a_message(
    make_sim: Callable[..., InProcessSimulator], body: dict[str, Any], words: str
) -> None:
    client = make_sim().client
    answer = await client.post(CREATE, json=body)
    assert answer.status_code == 400
    assert set(answer.json()) == {"message"}
    assert words in answer.json()["message"]
    assert (await stats(client))["submissions"] == 0


async def test_a_task_goes_waiting_generating_success_with_its_url_and_credits(
    make_sim: Callable[..., InProcessSimulator], clock: FakeClock
) -> None:
    client = make_sim(billed_factor=1.5).client
    body = _with(upscaleResolution="4k")
    task_id = (await client.post(CREATE, json=body)).json()["taskId"]
    seen = []
    for step in (0.0, 3.0, 8.0):
        clock.advance(step)
        seen.append((await client.get(RECORD, params={"taskId": task_id})).json())
    assert [r["status"] for r in seen] == ["waiting", "generating", "success"]
    assert seen[1]["creditsUsed"] == 0 and seen[1]["output"] == []
    done = seen[2]
    assert done["creditsUsed"] == round((40 + 28) * 5 * 1.5)  # list price x billed_factor
    assert done["output"][0]["url"].startswith("http://sim.test/_files/videos/")
    assert done["error"] is None and done["completeTime"] >= done["createTime"]
    video = await client.get(done["output"][0]["url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


async def test_a_failed_task_reports_a_policy_code_uses_no_credits_and_is_not_billed(
    make_sim: Callable[..., InProcessSimulator], clock: FakeClock
) -> None:
    client = make_sim(failure_rate=1.0).client
    task_id = (await client.post(CREATE, json=BASIC)).json()["taskId"]
    clock.advance(11)
    failed = (await client.get(RECORD, params={"taskId": task_id})).json()
    assert failed["status"] == "fail"
    assert failed["error"] == {"code": "2038", "message": "Prompt flagged by content moderation"}
    assert failed["creditsUsed"] == 0
    assert (await stats(client))["billed_tasks"] == 0


async def test_the_webhook_is_the_envelope_with_state(
    make_sim: Callable[..., InProcessSimulator], clock: FakeClock
) -> None:
    sim = make_sim()
    task_id = (await sim.client.post(CREATE, json=BASIC)).json()["taskId"]
    clock.advance(11)
    body = sim.sim.webhook_body(sim.sim.store.tasks[task_id], "http://sim.test", status="succeeded")
    assert (body["code"], body["message"]) == (200, "success")
    data = body["data"]
    assert (data["taskId"], data["state"], data["creditsUsed"]) == (task_id, "success", 200)
    assert "status" not in data and {"orderId", "updateTime"} <= set(data)


async def test_another_keys_task_is_403_an_unknown_one_404_a_bad_id_400(
    make_sim: Callable[..., InProcessSimulator],
) -> None:
    sim = make_sim()
    task_id = (await sim.client.post(CREATE, json=BASIC)).json()["taskId"]
    other = {"Authorization": "Bearer kin-someone-else"}
    answers = [
        await sim.client.get(RECORD, params={"taskId": task_id}, headers=other),
        await sim.client.get(RECORD, params={"taskId": "task_" + "0" * 24}),
        await sim.client.get(RECORD, params={"taskId": "a b"}),
    ]
    assert [a.status_code for a in answers] == [403, 404, 400]
    assert all(set(a.json()) == {"message"} for a in answers)
    # A RelayDance task is not a Kinovi task, and the other way round.
    relay = await sim.client.get(f"/v1/video/generations/{task_id}")
    assert relay.status_code == 404


async def test_the_dialect_knob_serves_one_api_or_both(
    make_sim: Callable[..., InProcessSimulator],
) -> None:
    relay_body = {"model": "doubao-seedance-2-0-720p", "prompt": "p", "seconds": "5"}
    both = make_sim().client
    assert (await both.post(CREATE, json=BASIC)).status_code == 200
    assert (await both.post("/v1/video/generations", json=relay_body)).status_code == 200
    only = make_sim(dialect="kinovi").client
    assert (await only.post("/v1/video/generations", json=relay_body)).status_code == 404
    assert (await only.post(CREATE, json=BASIC)).status_code == 200
    relay_only = make_sim(dialect="relaydance").client
    assert (await relay_only.post(CREATE, json=BASIC)).status_code == 404


# The shared faults and limits ---------------------------------------------------------------


async def test_the_concurrency_cap_answers_kinovis_429(
    make_sim: Callable[..., InProcessSimulator],
) -> None:
    client = make_sim(concurrency_cap=1, retry_after=2).client
    assert (await client.post(CREATE, json=BASIC)).status_code == 200
    refused = await client.post(CREATE, json=BASIC)
    assert refused.status_code == 429
    assert refused.json() == {"message": "Too many tasks in progress, wait for some to complete"}
    assert refused.headers["Retry-After"] == "2"
    found = await stats(client)
    assert (found["submissions"], found["rate_limited"]) == (1, 1)


async def test_the_urls_a_kinovi_body_cited_are_kept_in_order_for_the_admin_views(
    make_sim: Callable[..., InProcessSimulator],
) -> None:
    client = make_sim().client
    body = _with(mode="reference", urls=["https://e/k.png", "https://e/v.mp4"],
                 audioUrls=["https://e/a.mp3"])  # fmt: skip
    task_id = (await client.post(CREATE, json=body)).json()["taskId"]
    shown = (await client.get(f"/_sim/tasks/{task_id}")).json()["input_urls"]
    assert shown == ["https://e/k.png", "https://e/v.mp4", "https://e/a.mp3"]


async def test_idempotency_keys_are_ignored_by_default_and_a_repeat_is_paid_twice(
    make_sim: Callable[..., InProcessSimulator],
) -> None:
    client = make_sim().client
    headers = {"Idempotency-Key": "rdj_1"}
    first = (await client.post(CREATE, json=BASIC, headers=headers)).json()["taskId"]
    second = (await client.post(CREATE, json=BASIC, headers=headers)).json()["taskId"]
    assert first != second
    assert (await stats(client))["paid_twice"] == 1


async def test_honoured_idempotency_keys_replay_the_first_kinovi_task(
    make_sim: Callable[..., InProcessSimulator],
) -> None:
    client = make_sim(honour_idempotency=True).client
    headers = {"Idempotency-Key": "rdj_1"}
    first = (await client.post(CREATE, json=BASIC, headers=headers)).json()["taskId"]
    again = await client.post(CREATE, json=BASIC, headers=headers)
    assert again.json() == {"taskId": first}
    other = await client.post(CREATE, json=KINOVI_OMNI_REFERENCE, headers=headers)
    assert other.status_code == 409
    found = await stats(client)
    assert (found["paid_twice"], found["duplicates"]) == (0, 1)


def test_relaydance_simulate_takes_the_dialect_and_refuses_an_unknown_one() -> None:
    from click.testing import CliRunner

    from simulator.cli import config_from_options, simulate

    assert config_from_options({"dialect": "kinovi"}).dialect == "kinovi"
    assert config_from_options({}).dialect == "both"
    refused = CliRunner().invoke(simulate, ["--dialect", "openai"])
    assert refused.exit_code == 2
    assert "'openai' is not one of 'both', 'relaydance', 'kinovi'" in refused.output
