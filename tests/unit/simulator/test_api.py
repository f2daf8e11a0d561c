"""The local RelayDance simulator behaves like the provider pages say, faults included.

Every test here drives the app in-process with a fake clock (no sleeping, no socket). What
only a real process shows (real HTTP, webhooks posted to a real receiver, dropped and
trickled replies) is in tests/integration/test_simulator_process.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from simulator import VIDEO_SHA256, SimConfig, video_bytes
from simulator.cli import config_from_options, simulate
from simulator.testing import InProcessSimulator
from tests.conftest import FakeClock
from tests.simulator_requests import BASIC, KEY, SUBMIT, fp, with_changes
from tests.unit.simulator.content import OTHER_KEY, Client, submit

pytestmark = pytest.mark.anyio

# Submit, poll, download -----------------------------------------------------------------


async def test_submit_answers_a_task_id_with_status_submitted(client: Client) -> None:
    response = await submit(client)
    assert response.status_code == 200
    body = response.json()
    assert body["task_id"].startswith("task_")
    assert body["status"] == "submitted"


async def test_a_task_goes_submitted_running_succeeded_as_its_generation_time_passes(
    client: Client, clock: FakeClock
) -> None:
    task_id = (await submit(client)).json()["task_id"]
    seen = []
    for _ in range(4):
        task = (await client.get(f"{SUBMIT}/{task_id}")).json()
        seen.append((task["status"], task["url"]))
        clock.advance(3.5)
    assert [s for s, _ in seen] == ["submitted", "running", "running", "succeeded"]
    assert all(url is None for _, url in seen[:3])
    assert seen[3][1].startswith("http://sim.test/_files/videos/")
    assert task["format"] == "mp4"
    assert task["metadata"] == {"ratio": "16:9", "resolution": "720p"}


async def test_the_succeeded_url_serves_the_published_mp4(client: Client, clock: FakeClock) -> None:
    task_id = (await submit(client)).json()["task_id"]
    clock.advance(11)
    url = (await client.get(f"{SUBMIT}/{task_id}")).json()["url"]
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp"
    assert hashlib.sha256(response.content).hexdigest() == VIDEO_SHA256
    assert response.content == video_bytes()
    assert (await client.get("/_sim/stats")).json()["downloads"] == 1


def test_the_mp4_is_one_valid_movie_with_an_h264_track() -> None:
    data = video_bytes()
    boxes = []
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8])
        offset += size
    assert offset == len(data)
    assert boxes == [b"ftyp", b"moov", b"mdat"]
    assert b"avc1" in data
    assert b"avcC" in data


async def test_video_bytes_pads_the_mp4_to_the_requested_size(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(video_bytes=3_000_000)
    task_id = (await submit(client)).json()["task_id"]
    clock.advance(11)
    response = await client.get((await client.get(f"{SUBMIT}/{task_id}")).json()["url"])
    small = video_bytes()
    assert len(response.content) == 3_000_000
    assert response.headers["content-length"] == "3000000"
    assert response.content[4:8] == b"ftyp"
    # Only the mdat size field differs from the small movie; the rest is zero padding.
    mdat = small.index(b"mdat") - 4
    assert response.content[:mdat] == small[:mdat]
    assert int.from_bytes(response.content[mdat : mdat + 4], "big") == 3_000_000 - mdat
    assert response.content[mdat + 4 : len(small)] == small[mdat + 4 :]
    assert response.content[len(small) :].count(0) == 3_000_000 - len(small)


async def test_failure_rate_one_ends_every_task_failed_with_an_error(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(failure_rate=1.0)
    ids = [(await submit(client)).json()["task_id"] for _ in range(3)]
    clock.advance(11)
    for task_id in ids:
        task = (await client.get(f"{SUBMIT}/{task_id}")).json()
        assert task["status"] == "failed"
        assert task["url"] is None
        assert task["error"]["message"]


async def test_generation_times_vary_within_the_jitter(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(gen_time_mean=10.0, gen_time_jitter=0.5)
    ids = [(await submit(client)).json()["task_id"] for _ in range(20)]
    ready = [(await client.get(f"/_sim/tasks/{t}")).json()["ready_at"] - clock.now for t in ids]
    assert all(5.0 <= r <= 15.0 for r in ready)
    assert len({round(r, 6) for r in ready}) > 1


async def test_the_same_seed_gives_the_same_task_ids(make_client: Callable[..., Client]) -> None:
    first = [(await submit(make_client(seed=42))).json()["task_id"] for _ in range(1)]
    second = [(await submit(make_client(seed=42))).json()["task_id"] for _ in range(1)]
    third = [(await submit(make_client(seed=43))).json()["task_id"] for _ in range(1)]
    assert first == second
    assert first != third


# Authentication and ownership -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBMIT),
        ("GET", f"{SUBMIT}/task_x"),
        ("POST", "/v1/files"),
        ("POST", "/v1/images/generations"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer ", "Basic abc", "sk-no-scheme"])
async def test_v1_refuses_requests_without_a_bearer_key_with_401_json(
    make_client: Callable[..., Client], method: str, path: str, header: str | None
) -> None:
    client = make_client(key=None)
    headers = {"Authorization": header} if header is not None else {}
    response = await client.request(method, path, json=BASIC, headers=headers)
    assert response.status_code == 401
    assert "API key" in response.json()["error"]["message"]


async def test_required_key_prefix_refuses_other_keys(make_client: Callable[..., Client]) -> None:
    client = make_client(key="pk-wrong", required_key_prefix="sk-")
    assert (await submit(client)).status_code == 401
    client.headers["Authorization"] = f"Bearer {KEY}"
    assert (await submit(client)).status_code == 200


async def test_a_task_is_not_found_for_another_key(client: Client) -> None:
    task_id = (await submit(client)).json()["task_id"]
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    response = await client.get(f"{SUBMIT}/{task_id}", headers=other)
    assert response.status_code == 404
    assert (await client.get(f"{SUBMIT}/{task_id}")).status_code == 200
    assert (await client.get(f"{SUBMIT}/task_doesnotexist")).status_code == 404


# Inspection -----------------------------------------------------------------------------


async def test_reset_forgets_tasks_and_counters_but_keeps_the_knobs(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(concurrency_cap=3)
    task_id = (await submit(client)).json()["task_id"]
    await client.get(f"{SUBMIT}/{task_id}")
    assert (await client.post("/_sim/reset")).status_code == 200
    assert (await client.get(f"{SUBMIT}/{task_id}")).status_code == 404
    stats = (await client.get("/_sim/stats")).json()
    assert stats["tasks"] == 0
    assert stats["submissions"] == 0
    assert stats["polls"] == 1  # the poll after the reset
    assert (await client.get("/_sim/config")).json()["concurrency_cap"] == 3


async def test_config_changes_only_the_knobs_given(client: Client) -> None:
    before = (await client.get("/_sim/config")).json()
    after = (await client.post("/_sim/config", json={"failure_rate": 0.5, "latency": 0.0})).json()
    assert after == {**before, "failure_rate": 0.5}


@pytest.mark.parametrize(
    "change", [{"failure_rate": 2}, {"no_such_knob": 1}, {"concurrency_cap": -1}, ["x"]]
)
async def test_config_refuses_bad_knobs_400_and_keeps_the_old_ones(
    client: Client, change: Any
) -> None:
    before = (await client.get("/_sim/config")).json()
    response = await client.post("/_sim/config", json=change)
    assert response.status_code == 400
    assert (await client.get("/_sim/config")).json() == before


async def test_the_debug_view_shows_the_key_fingerprint_and_not_the_callback_url(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(webhooks=False)
    body = with_changes(metadata__callback_url="http://127.0.0.1:9/hook/job-1/secret-token")
    task_id = (await submit(client, body)).json()["task_id"]
    debug = await client.get(f"/_sim/tasks/{task_id}")
    assert debug.json()["key"] == fp(KEY)
    assert debug.json()["has_callback"] is True
    assert "secret-token" not in debug.text
    poll = await client.get(f"{SUBMIT}/{task_id}")
    assert "secret-token" not in poll.text


async def test_unknown_paths_answer_json_404(client: Client) -> None:
    response = await client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


# The in-process helper and the CLI --------------------------------------------------------


@pytest.mark.anyio
async def test_the_in_process_simulator_serves_an_async_client() -> None:
    clock = FakeClock()
    async with InProcessSimulator(SimConfig(gen_time_mean=1.0), clock=clock) as sim:
        task_id = (await sim.client.post(SUBMIT, json=BASIC)).json()["task_id"]
        clock.advance(2)
        task = (await sim.client.get(f"{SUBMIT}/{task_id}")).json()
        assert task["status"] == "succeeded"
        assert (await sim.client.get(task["url"])).content == video_bytes()
        assert sim.sim.store.counters["polls"] == 1


def test_cli_has_an_option_per_knob() -> None:
    result = CliRunner().invoke(simulate, ["--help"])
    assert result.exit_code == 0
    for name in SimConfig.model_fields:
        assert "--" + name.replace("_", "-") in result.output
    assert "--gen-time" in result.output


def test_cli_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_SIM_GEN_TIME_MEAN", "7")
    monkeypatch.setenv("RELAYDANCE_SIM_FAILURE_RATE", "0.25")
    config = config_from_options({"gen_time_mean": 0.5, "failure_rate": None, "webhooks": False})
    assert config.gen_time_mean == 0.5
    assert config.failure_rate == 0.25
    assert config.webhooks is False
