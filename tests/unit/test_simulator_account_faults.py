"""The simulator's faults from outside the fleet: an outage, an empty balance, a revoked key,
a model the key may not use, and a gateway that loses a reply. Each is switched at run time
through ``POST /_sim/config``, in both dialects, as a night's tests switch them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from simulator.testing import InProcessSimulator
from tests.seed_bodies import KINOVI_TEXT_TO_VIDEO
from tests.simulator_requests import BASIC, KEY, SUBMIT

pytestmark = pytest.mark.anyio

KINOVI_CREATE = "/api/v1/jobs/createTask"
FINGERPRINT = hashlib.sha256(KEY.encode()).hexdigest()[:8]


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get("/_sim/stats")).json()
    return result


async def configure(client: httpx.AsyncClient, **knobs: Any) -> None:
    answer = await client.post("/_sim/config", json=knobs)
    assert answer.status_code == 200, answer.text


async def test_an_outage_answers_every_route_503_in_the_providers_json_until_it_ends(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client()
    task_id = (await client.post(SUBMIT, json=BASIC)).json()["task_id"]
    await configure(client, outage=True)

    answers = [
        await client.post(SUBMIT, json=BASIC),
        await client.get(f"{SUBMIT}/{task_id}"),
        await client.post(KINOVI_CREATE, json=KINOVI_TEXT_TO_VIDEO),
        await client.get(f"/_files/videos/{task_id}.mp4"),
    ]

    assert [a.status_code for a in answers] == [503, 503, 503, 503]
    assert answers[0].json()["error"]["message"]  # RelayDance's own shape
    assert set(answers[2].json()) == {"message"}  # Kinovi's own shape
    found = await stats(client)
    assert (found["outage_requests"], found["submissions"]) == (4, 1)
    await configure(client, outage=False)
    assert (await client.post(SUBMIT, json=BASIC)).status_code == 200


async def test_credit_for_two_clips_takes_two_then_refuses_in_each_dialects_words_until_topped_up(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(credit_clips=2)
    assert (await client.post(SUBMIT, json=BASIC)).status_code == 200
    assert (await client.post(KINOVI_CREATE, json=KINOVI_TEXT_TO_VIDEO)).status_code == 200

    relaydance = await client.post(SUBMIT, json=BASIC)
    kinovi = await client.post(KINOVI_CREATE, json=KINOVI_TEXT_TO_VIDEO)

    assert relaydance.status_code == 403
    assert "insufficient balance" in relaydance.json()["error"]["message"].lower()
    assert kinovi.status_code == 402 and "credits" in kinovi.json()["message"].lower()
    found = await stats(client)
    assert (found["submissions"], found["refused_credits"], found["credits_left"]) == (2, 2, 0)
    await configure(client, credit_clips=1)
    assert (await client.post(SUBMIT, json=BASIC)).status_code == 200
    assert (await client.post(SUBMIT, json=BASIC)).status_code == 403


async def test_a_revoked_key_is_refused_401_on_every_route_by_its_fingerprint(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client()
    task_id = (await client.post(SUBMIT, json=BASIC)).json()["task_id"]
    await configure(client, revoked_keys=[FINGERPRINT])

    submit = await client.post(SUBMIT, json=BASIC)
    poll = await client.get(f"{SUBMIT}/{task_id}")
    kinovi = await client.post(KINOVI_CREATE, json=KINOVI_TEXT_TO_VIDEO)

    assert [submit.status_code, poll.status_code, kinovi.status_code] == [401, 401, 401]
    assert "revoked" in submit.json()["error"]["message"]
    assert KEY not in (await client.get("/_sim/config")).text  # fingerprints only
    await configure(client, revoked_keys=[])
    assert (await client.get(f"{SUBMIT}/{task_id}")).status_code == 200


async def test_every_key_can_be_revoked_at_once(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(revoked_keys=["*"])
    assert (await client.post(SUBMIT, json=BASIC)).status_code == 401


async def test_a_forbidden_model_is_a_403_that_names_the_model_and_other_models_pass(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(forbidden_models=[BASIC["model"]])
    refused = await client.post(SUBMIT, json=BASIC)
    assert refused.status_code == 403 and BASIC["model"] in refused.json()["error"]["message"]
    other = {**BASIC, "model": "doubao-seedance-2-0-1080p", "metadata": {"resolution": "1080p"}}
    assert (await client.post(SUBMIT, json=other)).status_code == 200
    assert (await stats(client))["refused_model"] == 1


@pytest.mark.parametrize(("path", "body"), [(SUBMIT, BASIC), (KINOVI_CREATE, KINOVI_TEXT_TO_VIDEO)])
async def test_a_lost_reply_is_a_gateways_html_page_while_the_task_exists_and_is_billed(
    make_sim: Callable[..., InProcessSimulator], path: str, body: dict[str, Any]
) -> None:
    client = make_sim(lost_response_rate=1.0).client
    answer = await client.post(path, json=body)
    assert answer.status_code == 502
    assert answer.headers["content-type"].startswith("text/html")
    found = await stats(client)
    assert (found["submissions"], found["lost_responses"], found["billed_tasks"]) == (1, 1, 1)
