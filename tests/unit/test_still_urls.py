"""A still's urls are signed: on fakeredis, with a provider that makes stills and takes
clips, no job record (nor the clip's stored request) ever holds one, the clip's body sent
to the provider does, and a clip whose still's url is gone is canceled unsent, unbilled."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.batch_requests import req
from tests.contracts.harness import (
    SUBMIT,
    FakeProvider,
    fake_backend,
    job_of,
    money_engine,
    money_settings,
)
from tests.pipeline_helpers import RecordingEngine, run_step
from tests.unit.test_image_jobs import FakeImages, make_image_job
from worker.job.inputs import FEEDS, waiting_fields
from worker.job.notify import notify_final
from worker.job.record import Billing, JobState
from worker.render.request import url_problem
from worker.render.validation import validate_request

S = JobState
SIGNATURE = "?X-Amz-Signature=c2lnbmVkLXN0aWxsLXVybC1zZWNyZXQ"
OWN = "https://cdn.example/own.png"


@dataclass
class Both:
    """The images endpoint (signed urls) and the clips' submit, each clip's body kept."""

    images: FakeImages = field(default_factory=lambda: FakeImages(query=SIGNATURE))
    clips: FakeProvider = field(default_factory=FakeProvider)
    bodies: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == SUBMIT:
            self.bodies.append(request.content.decode())
            return self.clips(request)
        return self.images(request)


@pytest.fixture
def provider() -> Both:
    return Both()


@pytest.fixture
def engine(provider: Both, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = money_settings(tmp_path, allow_local_urls=True)
    engine = money_engine(fake_backend(), provider, settings)  # type: ignore[arg-type]
    yield engine
    engine.client.close()
    engine.downloads.close()


def queued_clip(engine: RecordingEngine) -> tuple[str, str]:
    """A still (n=2) made and stored, and the clip waiting for it, queued by its end."""
    still = make_image_job(engine, n=2)
    engine.store.update_fields(still, states={S.QUEUED}, set={FEEDS: "rdj_clip"})
    engine.store.create("rdj_clip", request=req("from the still", images=[OWN]),
                        alias="default", cost=0.7, extra=waiting_fields([still]))  # fmt: skip
    assert run_step(engine, "submit", still, seq=0).action == "next"
    assert run_step(engine, "download", still, seq=0).action == "next"
    notify_final(engine, still)
    assert job_of(engine, "rdj_clip").state is S.QUEUED
    return still, "rdj_clip"


def record_values(engine: RecordingEngine) -> str:
    """Every value of every job record, as one text."""
    hashes = [k for k in engine.redis.scan_iter("rd:job:*") if engine.redis.type(k) == "hash"]
    assert hashes
    return json.dumps([engine.redis.hgetall(key) for key in hashes])


def test_no_record_holds_a_stills_url_and_the_clips_body_does(
    engine: RecordingEngine, provider: Both
) -> None:
    still, clip = queued_clip(engine)
    urls = engine.store.image_urls([still])[0]
    assert urls and all(url.endswith(SIGNATURE) for url in urls)
    values = record_values(engine)
    assert SIGNATURE.lstrip("?") not in values and "/files/img_" not in values
    assert job_of(engine, still).image_count == 2
    assert job_of(engine, clip).request["images"] == [
        f"still://{still}/1", f"still://{still}/2", OWN,
    ]  # fmt: skip
    assert run_step(engine, "submit", clip, seq=job_of(engine, clip).seq).action == "next"
    (body,) = provider.bodies
    sent = [entry["image_url"]["url"] for entry in json.loads(body)["metadata"]["content"]]
    assert sent == [*urls, OWN] and "still://" not in body
    assert job_of(engine, clip).state is S.SUBMITTED
    values = record_values(engine)
    assert SIGNATURE.lstrip("?") not in values and "/files/img_" not in values


def test_a_clip_whose_stills_url_is_gone_is_canceled_unsent_and_unbilled(
    engine: RecordingEngine, provider: Both
) -> None:
    still, clip = queued_clip(engine)
    engine.redis.delete(f"rd:urls:{still}")  # expired with its key
    assert run_step(engine, "submit", clip, seq=job_of(engine, clip).seq).action == "stop"
    job = job_of(engine, clip)
    assert (job.state, job.billing, job.error_code) == (S.CANCELED, Billing.NONE, "input_expired")
    assert job.error_message == (
        f"the url of its still {still} is gone (expired); the clip was never sent"
    )
    assert provider.bodies == [] and provider.clips.posts == 0
    assert not engine.limits.holds("default", clip)


def test_a_clip_naming_its_stills_is_valid_to_retake_and_nothing_else_of_that_scheme_is() -> None:
    named = f"still://rdj_{'0a' * 16}/1"
    assert validate_request(req("again", images=[named, OWN])).images == (named, OWN)
    for other in ("still://rdj_x/1", f"{named}?a=b", f"still://rdj_{'0a' * 16}/0"):
        assert "scheme must be http or https" in (url_problem(other) or "")
