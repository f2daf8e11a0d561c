"""An image job through the money logic on fakeredis, with a provider that counts what it
was sent: one POST to the images endpoint, each still stored and hashed, and a reply that
may have been lost left to the operator, never posted again."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from config.settings import Settings, get_settings
from simulator.stills import image_png
from tests.contracts.harness import BASE, fake_backend, job_of, money_engine, money_settings
from tests.pipeline_helpers import RecordingEngine, run_step
from worker.api.checks import check_render
from worker.cli.main import main
from worker.errors import InvalidRequest
from worker.job import pipeline
from worker.job.advance import plan_for
from worker.job.record import Billing, JobKind, JobState
from worker.job.sweeper import sweep
from worker.render.image_request import validate_image_request
from worker.render.pricing import IMAGE_DEFAULT_PRICE, estimate_cost

S = JobState
IMAGES = "/v1/images/generations"
STILL = {"model": "grok-imagine-image", "prompt": "a lighthouse keyframe", "n": 2}
KEY_ENV = "sk-images-unit-" + "SW1hZ2VKb2JzVW5pdFRlc3RLZXkxMjM0"


@dataclass
class FakeImages:
    """The images endpoint, scripted per POST (``ok`` by default): ``drop`` makes the
    images and loses the reply, ``gateway`` answers a proxy's 502 page, ``500`` the
    provider's own error JSON and ``429`` a rate limit (neither makes anything)."""

    replies: list[str] = field(default_factory=list)
    posts: int = 0
    made: list[str] = field(default_factory=list)  # every image made: each one is billed
    on_post: Any = None
    query: str = ""  # after each url: a signature, as the provider's urls carry
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == IMAGES:
            return self._generate(request)
        name = request.url.path.rsplit("/", 1)[1]
        if request.method == "GET" and name.removesuffix(".png") in self.made:
            return httpx.Response(200, content=image_png(name.removesuffix(".png"), 32, 32))
        return httpx.Response(404, json={"error": {"message": "no such file"}})

    def _generate(self, request: httpx.Request) -> httpx.Response:
        self.posts += 1
        if self.on_post is not None:
            self.on_post()
        reply = self.replies.pop(0) if self.replies else "ok"
        if reply in ("429", "500"):
            return httpx.Response(int(reply), json={"error": {"message": reply, "type": "x"}})
        ids = [f"img_{next(self._ids)}" for _ in range(json.loads(request.content)["n"])]
        self.made += ids
        if reply == "drop":
            raise httpx.ReadTimeout("the reply was lost", request=request)
        if reply == "gateway":
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        return httpx.Response(
            200, json={"data": [{"url": f"{BASE}/files/{i}.png{self.query}"} for i in ids]}
        )


@pytest.fixture
def provider() -> FakeImages:
    return FakeImages()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return money_settings(tmp_path, allow_local_urls=True)


@pytest.fixture
def engine(provider: FakeImages, settings: Settings) -> Iterator[RecordingEngine]:
    engine = money_engine(fake_backend(), provider, settings)  # type: ignore[arg-type]
    yield engine
    engine.client.close()
    engine.downloads.close()


def make_image_job(engine: RecordingEngine, **fields: Any) -> str:
    """Record an image job as enqueue_render does, without sending a message."""
    request = validate_image_request({**STILL, **fields})
    job_id = "rdj_" + hashlib.sha256(repr(fields).encode()).hexdigest()[:32]
    engine.store.create(job_id, request=request.model_dump(mode="json"), alias="default",
                        cost=estimate_cost(request), extra={"kind": "image"})  # fmt: skip
    return job_id


def test_an_image_job_plans_no_poll_and_no_prepare(engine: RecordingEngine) -> None:
    job = job_of(engine, make_image_job(engine))
    assert job.kind is JobKind.IMAGE
    assert plan_for(job) == ["submit", "download"]


def test_an_image_job_posts_once_then_stores_each_still_signature_checked_and_hashed(
    engine: RecordingEngine, provider: FakeImages
) -> None:
    job_id = make_image_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "next"
    job = job_of(engine, job_id)
    assert (job.state, job.billing, job.image_count) == (S.GENERATED, Billing.BILLED, 2)
    assert not engine.limits.holds("default", job_id)  # nothing generates any more
    assert plan_for(job) == ["download"]
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"  # a redelivery
    assert run_step(engine, "download", job_id, seq=0).action == "next"
    job = job_of(engine, job_id)
    assert job.state is S.DONE and provider.posts == 1
    assert [Path(o["path"]).name for o in job.outputs] == [f"{job_id}-1.png", f"{job_id}-2.png"]
    for output, image_id in zip(job.outputs, provider.made, strict=True):
        served = hashlib.sha256(image_png(image_id, 32, 32)).hexdigest()
        assert (
            output["sha256"]
            == served
            == hashlib.sha256(Path(output["path"]).read_bytes()).hexdigest()
        )
        assert (output["content_type"], output["width"]) == ("image/png", 32)
        manifest = json.loads(Path(output["path"]).with_suffix(".json").read_text())
        assert (manifest["job_id"], manifest["sha256"], manifest["kind"]) == (
            job_id, output["sha256"], "image",
        )  # fmt: skip
    assert (job.sha256, job.output_path) == (job.outputs[0]["sha256"], job.outputs[0]["path"])
    assert job.summary()["kind"] == "image" and len(job.summary()["outputs"]) == 2


@pytest.mark.parametrize("reply", ["drop", "gateway"])
def test_a_lost_image_reply_is_submit_unknown_and_never_posted_again(
    engine: RecordingEngine, provider: FakeImages, reply: str
) -> None:
    provider.replies = [reply]
    job_id = make_image_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    job = job_of(engine, job_id)
    assert (job.state, job.billing, job.error_code) == (
        S.SUBMIT_UNKNOWN, Billing.UNKNOWN, "submit_unknown",
    )  # fmt: skip
    assert job.error_message and job.possibly_billed == 1
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    assert run_step(engine, "submit", job_id, seq=0, attempt=1).action == "stop"
    sweep(engine, grace=0.0)
    assert job_of(engine, job_id).state is S.SUBMIT_UNKNOWN
    assert (provider.posts, len(provider.made)) == (1, 2)  # paid once, for two images


def test_a_lost_image_reply_is_not_retried_even_for_a_key_declared_idempotent(
    provider: FakeImages, tmp_path: Path
) -> None:
    settings = money_settings(tmp_path, allow_local_urls=True, provider_idempotent=True)
    engine = money_engine(fake_backend(), provider, settings)  # type: ignore[arg-type]
    provider.replies = ["drop"]
    job_id = make_image_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    assert job_of(engine, job_id).state is S.SUBMIT_UNKNOWN and provider.posts == 1


def test_the_providers_own_5xx_is_retried_unbilled_and_the_images_made_once(
    engine: RecordingEngine, provider: FakeImages
) -> None:
    provider.replies = ["500"]
    job_id = make_image_job(engine)
    outcome = run_step(engine, "submit", job_id, seq=0)
    assert outcome.action == "again"
    assert job_of(engine, job_id).billing is Billing.NONE
    assert run_step(engine, "submit", job_id, seq=0, **outcome.kwargs).action == "next"
    assert (provider.posts, len(provider.made)) == (2, 2)
    assert job_of(engine, job_id).state is S.GENERATED


def test_a_429_puts_the_image_job_back_in_line_unbilled(
    engine: RecordingEngine, provider: FakeImages
) -> None:
    provider.replies = ["429"]
    job_id = make_image_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    job = job_of(engine, job_id)
    assert (job.state, job.billing, job.seq) == (S.WAITING_FOR_SLOT, Billing.NONE, 1)
    assert run_step(engine, "submit", job_id, seq=1).action == "next"
    assert (provider.posts, len(provider.made)) == (2, 2)


def test_messages_arriving_during_the_image_post_make_no_second_post(
    engine: RecordingEngine, provider: FakeImages
) -> None:
    job_id = make_image_job(engine)
    inner: list[str] = []

    def redelivered() -> None:
        provider.on_post = None
        for attempt in (0, 1):
            inner.append(run_step(engine, "submit", job_id, seq=0, attempt=attempt).action)

    provider.on_post = redelivered
    assert run_step(engine, "submit", job_id, seq=0, attempt=1).action == "next"
    assert inner == ["stop", "stop"] and provider.posts == 1


def test_a_reply_after_the_sweeper_judged_the_post_in_doubt_is_still_the_jobs(
    engine: RecordingEngine, provider: FakeImages
) -> None:
    job_id = make_image_job(engine, n=1)
    judged: list[JobState] = []

    def outlived() -> None:  # the POST outlives its due time: the sweeper judges it
        sweep(engine, grace=-1e9)
        judged.append(job_of(engine, job_id).state)

    provider.on_post = outlived
    assert run_step(engine, "submit", job_id, seq=0).action == "next"
    assert judged == [S.SUBMIT_UNKNOWN]
    job = job_of(engine, job_id)
    assert (job.state, job.billing, job.error_code) == (S.GENERATED, Billing.BILLED, None)
    assert run_step(engine, "download", job_id, seq=job.seq).action == "next"
    assert Path(job_of(engine, job_id).outputs[0]["path"]).name == f"{job_id}.png"


@pytest.fixture
def a_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RELAYDANCE_API_KEY", KEY_ENV)
    monkeypatch.delenv("RELAYDANCE_API_KEYS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("a_key")
def test_an_image_request_is_checked_by_the_image_rules_before_anything_is_written() -> None:
    checked = check_render({**STILL, "size": "1024x1024"})
    assert checked.kind is JobKind.IMAGE and not checked.uploads
    assert estimate_cost(checked.request) == pytest.approx(2 * IMAGE_DEFAULT_PRICE)
    with pytest.raises(InvalidRequest) as exc:
        check_render({"model": "grok-imagine-image", "prompt": "", "n": 9, "size": "7x7"})
    assert {name for name, _ in exc.value.problems} == {"prompt", "n", "size"}
    with pytest.raises(InvalidRequest) as exc:
        check_render({**STILL, "seconds": 5})
    assert dict(exc.value.problems)["seconds"].startswith("unknown field")


@pytest.mark.usefixtures("a_key")
def test_render_takes_n_and_size_for_an_image_model_and_refuses_a_clips_flags() -> None:
    args = ["render", "--model", "grok-imagine-image", "--prompt", "a keyframe"]
    result = CliRunner().invoke(main, [*args, "--n", "2", "--size", "1024x1024", "--dry-run",
                                       "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["body"] == {
        "model": "grok-imagine-image", "prompt": "a keyframe", "n": 2, "size": "1024x1024",
    }  # fmt: skip
    refused = CliRunner().invoke(main, [*args, "--ratio", "16:9", "--dry-run"])
    assert refused.exit_code == 2 and "--ratio: grok-imagine-image is an image model" in (
        refused.output
    )
    video = ["render", "--model", "doubao-seedance-2-0-fast-260128", "--prompt", "x"]
    refused = CliRunner().invoke(main, [*video, "--n", "2", "--dry-run"])
    assert refused.exit_code == 2 and "--n: only an image model takes it" in refused.output
    assert "--model" not in refused.output and "--prompt" not in refused.output
    assert CliRunner().invoke(main, [*video, "--dry-run"]).exit_code == 0


def test_images_made_for_a_job_canceled_during_the_post_are_kept_as_billed(
    engine: RecordingEngine, provider: FakeImages
) -> None:
    job_id = make_image_job(engine)
    provider.on_post = lambda: pipeline.cancel(engine, job_id)
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    job = job_of(engine, job_id)
    assert (job.state, job.billing, job.image_count) == (S.CANCELED, Billing.BILLED, 2)
    assert provider.posts == 1


def test_an_image_url_gone_before_the_download_fails_the_job_billed(
    engine: RecordingEngine, provider: FakeImages
) -> None:
    job_id = make_image_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "next"
    provider.made.clear()  # the provider no longer serves them: there is no task to ask
    assert run_step(engine, "download", job_id, seq=0).action == "stop"
    job = job_of(engine, job_id)
    assert (job.state, job.error_code, job.billing) == (S.FAILED, "url_expired", Billing.BILLED)
    assert provider.posts == 1 and not job.outputs
