"""The bodies printed in the provider pages are exactly what a validated request sends.

Seeds 001 and 004 print submit bodies; they are copied here as literals. Each must equal
``validate_request(...).to_body(...)`` for the same inputs, field for field, and the local
simulator must accept it (and refuse the shapes the real API refuses).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator import PNG_BYTES, SimConfig, create_app
from tests.seed_bodies import SEED_001_CONTENT, SEED_001_SUBMIT, SEED_004_CURL
from worker.render.validation import validate_request

with warnings.catch_warnings():
    # Starlette 1.x would rather drive its test client with `httpx2`; httpx still works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

KEY = "sk-seed-bodies-0001"
AUTH = {"Authorization": f"Bearer {KEY}"}
SUBMIT = "/v1/video/generations"

SEED_001_SUBMIT_INPUT: dict[str, Any] = {
    "model": "doubao-seedance-2-0-1080p",
    "prompt": "A dancer spins in golden hour light, cinematic",
    "seconds": "10",
    "ratio": "16:9",
    "resolution": "1080p",
    "generate_audio": True,
}
SEED_001_CALLBACK = "https://your-server.example.com/webhook"

SEED_001_CONTENT_INPUT: dict[str, Any] = {
    "model": "seedance-1-5-pro-with-audio",
    "prompt": "@image1 slowly turns its head toward the camera, soft studio light",
    "seconds": "5",
    "ratio": "16:9",
    "resolution": "720p",
    "images": ["https://example.com/cat.jpg"],
}

SEED_004_CURL_INPUT: dict[str, Any] = {
    "model": "seedance-1-5-pro-with-audio",
    "prompt": "@image1 comes alive: gentle camera pull-back, hair moving in a soft breeze",
    "seconds": "5",
    "ratio": "16:9",
    "resolution": "720p",
    "images": ["https://example.com/portrait.jpg"],
}

# Seed 004, the Python example: same shape, its image URL comes from POST /v1/files.
SEED_004_PYTHON_PROMPT = "@image1 comes alive: gentle camera pull-back, soft natural light"


def seed_004_python_body(image_url: str) -> dict[str, Any]:
    """The ``json=`` argument of the seed's Python submit, for a given uploaded URL."""
    return {
        "model": "seedance-1-5-pro-with-audio",
        "prompt": "@image1 comes alive: gentle camera pull-back, soft natural light",
        "seconds": "5",
        "metadata": {
            "ratio": "16:9",
            "resolution": "720p",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": image_url},
                    "role": "reference_image",
                }
            ],
        },
    }


SEEDS = {
    "001-submit": (SEED_001_SUBMIT, SEED_001_SUBMIT_INPUT, SEED_001_CALLBACK),
    "001-content": (SEED_001_CONTENT, SEED_001_CONTENT_INPUT, None),
    "004-curl": (SEED_004_CURL, SEED_004_CURL_INPUT, None),
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    # Webhooks off: the seed's callback host is an example, and nothing leaves the test.
    app = create_app(SimConfig(webhooks=False, seed=1))
    with TestClient(app) as test_client:
        yield test_client


# (a) the model builds the documented body ------------------------------------------------


@pytest.mark.parametrize(("seed", "data", "callback"), SEEDS.values(), ids=SEEDS.keys())
def test_the_request_model_builds_the_seed_body(
    seed: dict[str, Any], data: dict[str, Any], callback: str | None
) -> None:
    assert validate_request(data).to_body(callback_url=callback) == seed


def test_ratio_and_resolution_defaults_give_the_seed_bodies() -> None:
    # The seeds spell out 16:9 and the model's resolution; leaving them out sends the same.
    for seed, data, callback in SEEDS.values():
        bare = {k: v for k, v in data.items() if k not in ("ratio", "resolution")}
        assert validate_request(bare).to_body(callback_url=callback) == seed


def test_the_seed_004_python_flow_uploads_then_sends_the_documented_body(
    client: TestClient, tmp_path: Path
) -> None:
    portrait = tmp_path / "portrait.jpg"
    portrait.write_bytes(PNG_BYTES)  # any image the magic-byte check accepts
    valid = validate_request(
        {"model": "seedance-1-5-pro-with-audio", "prompt": SEED_004_PYTHON_PROMPT,
         "seconds": "5", "images": [str(portrait)]}
    )  # fmt: skip

    with portrait.open("rb") as fh:
        upload = client.post("/v1/files", headers=AUTH, files={"file": ("portrait.jpg", fh)})
    assert upload.status_code == 200, upload.text
    image_url = upload.json()["url"]
    body = valid.to_body(media_urls={path: image_url for path in valid.local_paths()})

    assert body == seed_004_python_body(image_url)
    response = client.post(SUBMIT, headers=AUTH, json=body)
    assert response.status_code == 200, response.text


# (b) the simulator accepts them, and refuses what the real API refuses --------------------


@pytest.mark.parametrize(("seed", "data", "callback"), SEEDS.values(), ids=SEEDS.keys())
def test_the_simulator_accepts_the_seed_body(
    client: TestClient, seed: dict[str, Any], data: dict[str, Any], callback: str | None
) -> None:
    response = client.post(SUBMIT, headers=AUTH, json=seed)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "submitted"
    assert answer["task_id"]

    task = client.get(f"{SUBMIT}/{answer['task_id']}", headers=AUTH).json()
    assert task["model"] == seed["model"]
    assert task["seconds"] == seed["seconds"]
    assert task["metadata"]["ratio"] == seed["metadata"]["ratio"]
    assert task["metadata"]["resolution"] == seed["metadata"]["resolution"]


def test_the_simulator_accepts_the_body_the_model_builds(client: TestClient) -> None:
    body = validate_request(SEED_001_SUBMIT_INPUT).to_body(callback_url=SEED_001_CALLBACK)
    response = client.post(SUBMIT, headers=AUTH, json=body)
    assert response.status_code == 200, response.text


def test_the_simulator_wants_a_bearer_key(client: TestClient) -> None:
    assert client.post(SUBMIT, json=SEED_001_SUBMIT).status_code == 401


def test_a_callback_url_at_the_top_level_is_refused(client: TestClient) -> None:
    body = copy.deepcopy(SEED_001_SUBMIT)
    body["callback_url"] = body["metadata"].pop("callback_url")
    response = client.post(SUBMIT, headers=AUTH, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "callback_url"


def test_seconds_as_a_number_is_refused(client: TestClient) -> None:
    body = copy.deepcopy(SEED_001_SUBMIT)
    body["seconds"] = 10
    response = client.post(SUBMIT, headers=AUTH, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seconds"
