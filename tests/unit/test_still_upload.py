"""A storyboard clip that waited past its stills' trust (RELAYDANCE_INPUT_URL_TRUST_SECONDS)
uploads each still's stored file through ``POST /files`` before its POST, and sends the
upload's url instead of the provider's; a still that cannot be sent again (its file gone
or changed) cancels the clip unsent. On fakeredis, with a provider that makes stills,
takes uploads and takes clips."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.batch_requests import req
from tests.contracts.harness import fake_backend, job_of, money_engine, money_settings
from tests.pipeline_helpers import RecordingEngine, run_step
from tests.unit.test_image_jobs import make_image_job
from tests.unit.test_still_urls import OWN, SIGNATURE, Both, queued_clip, record_values
from worker.job.advance import plan_for
from worker.job.inputs import FEEDS, waiting_fields
from worker.job.record import Billing, JobState

S = JobState
UPLOAD = "/v1/files"
TRUST = 600.0


@dataclass
class WithUploads(Both):
    """:class:`Both`, and ``POST /files``: each upload's bytes kept, its url answered."""

    uploaded: list[tuple[str, bytes]] = field(default_factory=list)
    attempts: int = 0
    fail_at: set[int] = field(default_factory=set)  # these attempts get the provider's 500

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == UPLOAD:
            self.attempts += 1
            if self.attempts in self.fail_at:
                return httpx.Response(500, json={"error": {"message": "upstream", "type": "x"}})
            body = request.read()
            name = body.split(b'filename="', 1)[1].split(b'"', 1)[0].decode()
            data = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
            self.uploaded.append((name, data))
            return httpx.Response(200, json={"url": f"https://files.test/up_{len(self.uploaded)}"})
        return super().__call__(request)


@pytest.fixture
def provider() -> WithUploads:
    return WithUploads()


@pytest.fixture
def engine(provider: WithUploads, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = money_settings(tmp_path, allow_local_urls=True, input_url_trust_seconds=TRUST,
                              media_dirs=str(tmp_path))  # fmt: skip
    engine = money_engine(fake_backend(), provider, settings)  # type: ignore[arg-type]
    yield engine
    engine.client.close()
    engine.downloads.close()


def past_trust(engine: RecordingEngine, clip: str, still: str) -> None:
    """The clip waited in line past its still's trust: the still replied that long ago."""
    replied = time.time() - TRUST - 1
    engine.redis.hset(f"rd:job:{still}", "t_generated", repr(replied))
    engine.store.update_fields(clip, states={S.QUEUED}, set={"inputs_until": replied + TRUST})


def sent_urls(provider: WithUploads) -> list[str]:
    (body,) = provider.bodies
    return [entry["image_url"]["url"] for entry in json.loads(body)["metadata"]["content"]]


def test_a_clip_within_its_stills_trust_sends_the_providers_urls_and_uploads_nothing(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    still, clip = queued_clip(engine)
    job = job_of(engine, clip)
    replied = job_of(engine, still).times["generated"]
    assert job.inputs_until == pytest.approx(replied + TRUST)
    assert plan_for(job)[0] == "submit"  # no prepare: nothing to make
    assert run_step(engine, "submit", clip, seq=job.seq).action == "next"
    assert sent_urls(provider) == [*(engine.store.image_urls([still])[0] or []), OWN]
    assert provider.uploaded == []


def test_past_its_trust_the_clip_uploads_its_stored_stills_and_sends_those_urls(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    still, clip = queued_clip(engine)
    past_trust(engine, clip, still)
    job = job_of(engine, clip)
    assert plan_for(job) == ["prepare", "submit", "poll", "download"]
    assert run_step(engine, "prepare", clip, seq=job.seq).action == "next"
    stored = job_of(engine, still).outputs
    assert [(name, hashlib.sha256(data).hexdigest()) for name, data in provider.uploaded] == [
        (f"{still}-{n}.png", out["sha256"]) for n, out in enumerate(stored, start=1)
    ]
    job = job_of(engine, clip)
    assert job.uploaded == [f"still://{still}/1", f"still://{still}/2"]
    assert engine.store.uploads(job) == {f"still://{still}/1": "https://files.test/up_1",
                                         f"still://{still}/2": "https://files.test/up_2"}  # fmt: skip
    assert "files.test" not in record_values(engine)  # an upload's url: never in a record
    assert time.time() < job.inputs_until <= time.time() + TRUST  # type: ignore[operator]
    assert plan_for(job)[0] == "submit"
    assert run_step(engine, "submit", clip, seq=job.seq).action == "next"
    assert sent_urls(provider) == ["https://files.test/up_1", "https://files.test/up_2", OWN]
    assert SIGNATURE not in provider.bodies[0]
    assert job_of(engine, clip).state is S.SUBMITTED and provider.clips.posts == 1


def test_a_clip_given_its_slot_past_its_trust_goes_back_to_prepare_before_any_claim(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    still, clip = queued_clip(engine)
    past_trust(engine, clip, still)
    engine.sent.clear()
    outcome = run_step(engine, "submit", clip, seq=job_of(engine, clip).seq)
    assert (outcome.action, outcome.reason) == ("stop", "its inputs' urls are made again first")
    job = job_of(engine, clip)
    assert (job.state, job.submit_claim, job.billing) == (S.QUEUED, 0, Billing.NONE)
    assert [name for name, *_ in engine.sent] == ["relaydance.prepare"]
    assert engine.limits.holds("default", clip)  # it keeps its slot through the uploads
    assert provider.clips.posts == 0


def test_a_stored_still_that_changed_or_is_gone_cancels_the_clip_unsent_and_unbilled(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    still, clip = queued_clip(engine)
    first, second = (Path(out["path"]) for out in job_of(engine, still).outputs)
    first.write_bytes(first.read_bytes() + b"\0")
    past_trust(engine, clip, still)
    assert run_step(engine, "prepare", clip, seq=job_of(engine, clip).seq).action == "stop"
    job = job_of(engine, clip)
    assert (job.state, job.billing, job.error_code) == (S.CANCELED, Billing.NONE, "input_expired")
    assert "its sha256 differs" in (job.error_message or "")
    assert job.error_message.endswith("; the clip was never sent")  # type: ignore[union-attr]
    assert provider.uploaded == [] and provider.clips.posts == 0
    assert not engine.limits.holds("default", clip)
    second.unlink()
    other = _another_clip(engine, still)
    assert run_step(engine, "prepare", other, seq=job_of(engine, other).seq).action == "stop"
    assert "cannot read" in (job_of(engine, other).error_message or "")
    assert job_of(engine, other).state is S.CANCELED and provider.clips.posts == 0


def _another_clip(engine: RecordingEngine, still: str) -> str:
    """A retake of a clip made from ``still``'s second image, past its trust."""
    engine.store.create("rdj_other", request=req("again", images=[f"still://{still}/2"]),
                        alias="default", cost=0.7, extra={"inputs_until": "1"})  # fmt: skip
    return "rdj_other"


def test_a_retake_naming_a_still_goes_through_prepare_which_records_its_trust(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    still, _ = queued_clip(engine)
    named = f"still://{still}/1"
    engine.store.create("rdj_retake", request=req("again", images=[named]), alias="default",
                        cost=0.7)  # fmt: skip
    job = job_of(engine, "rdj_retake")
    assert job.inputs_until is None and plan_for(job)[0] == "prepare"
    assert run_step(engine, "prepare", "rdj_retake", seq=0).action == "next"
    job = job_of(engine, "rdj_retake")
    replied = job_of(engine, still).times["generated"]
    assert job.inputs_until == pytest.approx(replied + TRUST) and job.uploaded == []
    assert provider.uploaded == []  # still trusted: its provider url goes as it is
    assert plan_for(job)[0] == "submit"


def test_a_local_file_uploaded_before_a_long_wait_is_uploaded_again(
    engine: RecordingEngine, provider: WithUploads, tmp_path: Path
) -> None:
    frame = tmp_path / "frame.png"
    frame.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # a PNG's signature will do
    engine.store.create("rdj_local", request=req("from a file", images=[str(frame)]),
                        alias="default", cost=0.7)  # fmt: skip
    assert run_step(engine, "prepare", "rdj_local", seq=0).action == "next"
    job = job_of(engine, "rdj_local")
    assert engine.store.uploads(job) == {str(frame): "https://files.test/up_1"}
    assert job.inputs_until is not None and plan_for(job)[0] == "submit"
    engine.store.update_fields("rdj_local", states={S.QUEUED}, set={"inputs_until": 1.0})
    assert plan_for(job_of(engine, "rdj_local"))[0] == "prepare"
    assert run_step(engine, "prepare", "rdj_local", seq=0).action == "next"
    job = job_of(engine, "rdj_local")
    assert job.uploaded == [str(frame)]
    assert engine.store.uploads(job) == {str(frame): "https://files.test/up_2"}
    assert len(provider.uploaded) == 2


def test_an_upload_past_its_own_trust_is_made_again_and_the_old_url_never_sent(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    still, clip = queued_clip(engine)
    past_trust(engine, clip, still)
    assert run_step(engine, "prepare", clip, seq=job_of(engine, clip).seq).action == "next"
    assert len(provider.uploaded) == 2  # the still's two images
    engine.store.update_fields(clip, states={S.QUEUED}, set={"inputs_until": time.time() - 1})
    assert plan_for(job_of(engine, clip))[0] == "prepare"
    assert run_step(engine, "prepare", clip, seq=job_of(engine, clip).seq).action == "next"
    assert len(provider.uploaded) == 4
    assert run_step(engine, "submit", clip, seq=job_of(engine, clip).seq).action == "next"
    assert sent_urls(provider) == ["https://files.test/up_3", "https://files.test/up_4", OWN]


def test_a_still_stored_by_its_task_submits_its_clip_in_that_thread_with_no_message(
    engine: RecordingEngine, provider: WithUploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.render

    still = make_image_job(engine, n=2)
    engine.store.update_fields(still, states={S.QUEUED}, set={FEEDS: "rdj_clip"})
    engine.store.create("rdj_clip", request=req("from the still", images=[OWN]),
                        alias="default", cost=0.7, extra=waiting_fields([still]))  # fmt: skip
    assert run_step(engine, "submit", still, seq=0).action == "next"
    monkeypatch.setattr(tasks.render, "get_engine", lambda: engine)
    engine.sent.clear()
    tasks.render.download(still, 0)  # the task, as a worker runs it
    assert job_of(engine, still).state is S.DONE
    clip = job_of(engine, "rdj_clip")
    assert (clip.state, provider.clips.posts) == (S.SUBMITTED, 1)
    assert [name for name, *_ in engine.sent] == ["relaydance.poll"]  # the clip's next


def test_a_still_stored_outside_its_task_sends_its_clips_step(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    _, clip = queued_clip(engine)  # the download step run directly: no task
    assert job_of(engine, clip).state is S.QUEUED and provider.clips.posts == 0
    assert ("relaydance.submit", (clip, 0, 0), None) in engine.sent


def test_a_400_citing_a_trusted_still_url_is_sent_once_more_with_the_still_uploaded(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    still, clip = queued_clip(engine)
    provider.clips.replies = ["400", "400"]  # nothing created either time
    engine.sent.clear()
    outcome = run_step(engine, "submit", clip, seq=0)
    assert outcome.reason == "refused citing its stills' urls: sent again, uploaded"
    job = job_of(engine, clip)
    assert (job.state, job.billing, job.seq, job.inputs_resent) == (
        S.WAITING_FOR_SLOT, Billing.NONE, 1, True,
    )  # fmt: skip
    assert [name for name, *_ in engine.sent] == ["relaydance.prepare"]
    assert engine.limits.holds("default", clip)
    assert run_step(engine, "prepare", clip, seq=1).action == "next"
    assert [name for name, _ in provider.uploaded] == [f"{still}-1.png", f"{still}-2.png"]
    assert run_step(engine, "submit", clip, seq=1).action == "stop"  # refused again: failed
    job = job_of(engine, clip)
    assert (job.state, job.billing, job.error_code) == (S.FAILED, Billing.NONE, "bad_request")
    assert provider.clips.posts == 2 and len(provider.uploaded) == 2
    assert "files.test/up_1" in provider.bodies[1] and SIGNATURE not in provider.bodies[1]


def test_a_400_for_a_clip_citing_no_still_fails_it_at_once(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    engine.store.create("rdj_plain", request=req("plain", images=[OWN]), alias="default",
                        cost=0.7)  # fmt: skip
    provider.clips.replies = ["400"]
    assert run_step(engine, "submit", "rdj_plain", seq=0).action == "stop"
    job = job_of(engine, "rdj_plain")
    assert (job.state, job.error_code, provider.clips.posts) == (S.FAILED, "bad_request", 1)


def test_a_clip_past_its_trust_stays_so_until_every_url_is_made_again(
    engine: RecordingEngine, provider: WithUploads
) -> None:
    still, clip = queued_clip(engine)  # its still young, but the clip's trust spent
    engine.store.update_fields(clip, states={S.QUEUED}, set={"inputs_until": 1.0})
    provider.fail_at = {2}  # the second still image's upload fails: the step comes again
    assert run_step(engine, "prepare", clip, seq=0).action == "again"
    assert job_of(engine, clip).inputs_until == 1.0  # still past its trust
    assert run_step(engine, "prepare", clip, seq=0, attempt=1).action == "next"
    assert [name for name, _ in provider.uploaded] == [f"{still}-1.png"] * 2 + [f"{still}-2.png"]
    assert run_step(engine, "submit", clip, seq=0).action == "next"
    assert sent_urls(provider) == ["https://files.test/up_2", "https://files.test/up_3", OWN]
