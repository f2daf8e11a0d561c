"""Images end to end over real HTTP: the client asks the simulator process, the storage keeps
what it served. A reply lost after the images were made is an error the job flow must treat
as ambiguous, and the simulator shows the images billed once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import SecretStr

from simulator import image_sha256
from simulator.testing import SimulatorProcess
from worker.errors import ErroredRequest, ServerError, TransportFailure
from worker.job.stills import save_image
from worker.provider.client import ApiClient
from worker.provider.download import make_download_client
from worker.render.image_request import validate_image_request
from worker.storage import LocalStorage

KEY = SecretStr("sk-images-integration")
BODY = validate_image_request({"model": "grok-imagine-image", "prompt": "a keyframe", "n": 2})


def client_for(sim: SimulatorProcess, *, read_timeout: float = 10.0) -> ApiClient:
    return ApiClient(base_url=sim.url, read_timeout=read_timeout, call_deadline=30.0)


def test_stored_images_are_the_pngs_the_simulator_served_and_paid_once(
    sim: SimulatorProcess, tmp_path: Path
) -> None:
    with (
        client_for(sim) as client,
        make_download_client(connect_timeout=5, read_timeout=10) as http,
    ):
        urls = client.generate_images(BODY.to_body(), api_key=KEY, idempotency_key="rdj_img1")
        storage = LocalStorage(tmp_path)
        stored = [save_image(storage, url, name=f"rdj_img1-{i}", client=http, max_bytes=1 << 30,
                             allow_local=True, overall_timeout=30, manifest={"n": i})
                  for i, url in enumerate(urls, start=1)]  # fmt: skip
    ids = [url.split("/images/")[1].split(".png")[0] for url in urls]
    assert [s.sha256 for s in stored] == [image_sha256(i, 1024, 1024) for i in ids]
    assert [hashlib.sha256(s.path.read_bytes()).hexdigest() for s in stored if s.path] == [
        s.sha256 for s in stored
    ]
    assert {(s.width, s.height, s.content_type) for s in stored} == {(1024, 1024, "image/png")}
    stats = sim.stats()
    assert (stats["image_requests"], stats["images_billed"], stats["image_paid_twice"]) == (1, 2, 0)
    assert stats["image_downloads"] == 2


@pytest.mark.parametrize(
    ("knobs", "error"),
    [({"drop_reply_every": 1}, TransportFailure), ({"lost_response_rate": 1.0}, ServerError)],
)
def test_a_reply_lost_after_the_images_were_made_is_ambiguous_and_they_are_billed(
    sim: SimulatorProcess, knobs: dict[str, object], error: type[Exception]
) -> None:
    sim.configure(**knobs)
    with client_for(sim) as client, pytest.raises(error) as exc:
        client.generate_images(BODY.to_body(), api_key=KEY, idempotency_key="rdj_img2")
    assert not isinstance(exc.value, ErroredRequest)  # nothing says it was not billed
    assert sim.stats()["images_billed"] == 2


def test_a_generation_slower_than_the_read_timeout_is_ambiguous_and_billed(
    sim: SimulatorProcess,
) -> None:
    sim.configure(image_gen_time=3.0)
    with client_for(sim, read_timeout=0.3) as client, pytest.raises(TransportFailure):
        client.generate_images(BODY.to_body(), api_key=KEY)
    assert sim.stats()["images_billed"] == 2  # made before the client gave up


def test_the_providers_own_5xx_is_an_errored_request_and_bills_nothing(
    sim: SimulatorProcess,
) -> None:
    sim.configure(error_5xx_rate=1.0)
    with client_for(sim) as client, pytest.raises(ErroredRequest):
        client.generate_images(BODY.to_body(), api_key=KEY)
    assert sim.stats()["images_billed"] == 0
