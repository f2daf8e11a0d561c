"""A storyboard's clip waiting for its still, on fakeredis: never sent nor resumed while it
waits, queued with the still's images (named) first in its images once the still is done, canceled
unbilled with the reason when the still fails or is canceled."""

from __future__ import annotations

import time

import pytest

from tests.batch_requests import req
from tests.contracts.harness import job_of
from tests.pipeline_helpers import RecordingEngine, run_step
from tests.unit.test_image_jobs import engine as engine  # the fixtures, found by their names
from tests.unit.test_image_jobs import make_image_job
from tests.unit.test_image_jobs import provider as provider
from tests.unit.test_image_jobs import settings as settings
from worker.batch.chains import chain_of, chunks, links
from worker.batch.store import Item
from worker.job.inputs import FEEDS, settle_waiting, waiting_fields
from worker.job.notify import notify_final
from worker.job.record import Billing, JobState
from worker.job.sweeper import sweep

S = JobState
OWN = "https://cdn.example/own.png"


def storyboard(engine: RecordingEngine) -> tuple[str, str]:
    """A still (n=1) and a clip waiting for it, linked as a batch links them."""
    still = make_image_job(engine, n=1)
    engine.store.update_fields(still, states={S.QUEUED}, set={FEEDS: "rdj_clip"})
    engine.store.create("rdj_clip", request=req("from the still", images=[OWN]),
                        alias="default", cost=0.7, extra=waiting_fields([still]))  # fmt: skip
    return still, "rdj_clip"


def sent_for(engine: RecordingEngine, job_id: str) -> list[str]:
    return [name for name, args, _ in engine.sent if args and args[0] == job_id]


def test_a_waiting_clip_is_never_sent_nor_resumed_until_its_still_is_done(
    engine: RecordingEngine,
) -> None:
    _, clip = storyboard(engine)
    assert settle_waiting(engine, clip) == "waiting"
    sweep(engine, grace=0)
    engine.store.update_fields(clip, states={S.WAITING_FOR_INPUT}, due=time.time() - 1)
    sweep(engine, grace=0)
    job = job_of(engine, clip)
    assert (job.state, job.seq, job.billing) == (S.WAITING_FOR_INPUT, 0, Billing.NONE)
    assert sent_for(engine, clip) == [] and job.next_due and job.next_due > time.time()
    assert not engine.limits.holds("default", clip)


def test_a_done_still_queues_its_clip_with_its_url_first_and_sends_its_first_step(
    engine: RecordingEngine,
) -> None:
    still, clip = storyboard(engine)
    assert run_step(engine, "submit", still, seq=0).action == "next"
    assert run_step(engine, "download", still, seq=0).action == "next"
    done = job_of(engine, still)
    assert done.state is S.DONE
    notify_final(engine, still)  # the download step told it already: asked twice, moves once
    job = job_of(engine, clip)
    assert job.state is S.QUEUED
    assert job.request["images"] == [f"still://{still}/1", OWN]  # a name: the url is signed
    assert len(sent_for(engine, clip)) == 1  # its first step, once
    assert settle_waiting(engine, clip) == ""


@pytest.mark.parametrize("end", ["fail", "cancel"])
def test_a_still_that_fails_or_is_canceled_cancels_its_clip_unbilled(
    engine: RecordingEngine, end: str
) -> None:
    still, clip = storyboard(engine)
    if end == "fail":
        engine.store.fail(still, code="bad_request", message="forbidden model")
    else:
        engine.store.cancel(still)
    notify_final(engine, still)
    job = job_of(engine, clip)
    assert (job.state, job.billing, job.error_code) == (S.CANCELED, Billing.NONE, "input_failed")
    ended = {"fail": "failed", "cancel": "canceled"}[end]
    assert f"its still {still} {ended}; the clip was never sent" == job.error_message
    assert sent_for(engine, clip) == []


def test_chunks_never_split_a_chain_and_links_name_both_ends() -> None:
    items = {i: Item(i, f"fp{i}", 1, {"model": "m"}, refs=refs)
             for i, refs in enumerate([(), (0,), (0,), (), ()])}  # fmt: skip
    candidates = [(i, "") for i in items]
    assert [[c[0] for c in chunk] for chunk in chunks(candidates, chain_of(items), 2)] == [
        [0, 1, 2], [3, 4],
    ]  # fmt: skip
    created = [(items[0], "rdj_s"), (items[1], "rdj_a"), (items[2], "rdj_b")]
    linked = links(created, {})
    assert linked["rdj_s"] == {FEEDS: "rdj_a,rdj_b"}
    assert linked["rdj_a"]["state"] == "waiting_for_input"
    assert chain_of({0: items[0], 3: items[3]}) == {}  # no refs: each item its own chain
    assert links([(items[1], "rdj_a")], {0: "reuse:rdj_old"})["rdj_a"]["waits_for"] == "rdj_old"


def test_the_sweeper_moves_on_a_clip_whose_stills_end_was_never_told(
    engine: RecordingEngine,
) -> None:
    still, clip = storyboard(engine)
    engine.store.update_fields(still, states={S.QUEUED}, set={FEEDS: ""})  # the notice is lost
    engine.store.fail(still, code="bad_request", message="refused")
    notify_final(engine, still)
    assert job_of(engine, clip).state is S.WAITING_FOR_INPUT
    engine.store.update_fields(clip, states={S.WAITING_FOR_INPUT}, due=time.time() - 1)
    sweep(engine, grace=0)
    job = job_of(engine, clip)
    assert (job.state, job.error_code, job.notified_final) == (S.CANCELED, "input_failed", True)
    assert sent_for(engine, clip) == []
