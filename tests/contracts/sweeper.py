"""The sweeper and the enqueue handshake: a job left mid-step is judged by what its record
proves, and a job whose producer never confirmed it can never be posted."""

from __future__ import annotations

from tests.contracts.harness import MODEL, FakeProvider, MoneyContract, job_of, set_up
from tests.pipeline_helpers import RecordingEngine, make_job, run_step
from worker.job.record import Billing, JobState
from worker.job.sweeper import sweep
from worker.render.validation import validate_request

S = JobState


def left_submitting(engine: RecordingEngine, billing: str) -> str:
    """A job whose worker stopped after its claim, with ``billing`` as the record says."""
    job_id = make_job(engine)
    set_up(
        engine,
        job_id, states={S.QUEUED}, to=S.SUBMITTING,
        set={"billing": billing, "submit_claim": 0, "submit_intent_at": 1.0},
    )  # fmt: skip
    engine.limits.acquire("default", job_id, limit=10)
    set_up(engine, job_id, due=0.0)  # overdue
    return job_id


class SweeperContract(MoneyContract):
    def test_a_worker_killed_mid_post_leaves_the_job_unknown_and_nothing_is_posted(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        job_id = left_submitting(engine, Billing.PENDING.value)
        report = sweep(engine, grace=0.0)
        assert (report.unknown, report.resumed) == ([job_id], [])
        job = job_of(engine, job_id)
        assert (job.state, job.billing) == (S.SUBMIT_UNKNOWN, Billing.UNKNOWN)
        assert engine.limits.holds("default", job_id)
        sweep(engine, grace=0.0)
        assert job_of(engine, job_id).state is S.SUBMIT_UNKNOWN and provider.posts == 0

    def test_an_attempt_that_provably_never_left_is_resumed_and_posted_once(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        job_id = left_submitting(engine, Billing.NONE.value)
        report = sweep(engine, grace=0.0)
        assert (report.resumed, report.unknown) == ([job_id], [])
        assert job_of(engine, job_id).state is S.SUBMITTING and provider.posts == 0

    def test_an_unconfirmed_enqueue_is_never_posted_and_a_late_confirm_changes_nothing(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        request = validate_request({"model": MODEL, "prompt": "a boat"})
        job_id = engine.store.create_render(request, alias="default", pending=True)
        assert run_step(engine, "submit", job_id, seq=0).action == "again"  # not confirmed
        assert engine.store.abandon(job_id, reason="enqueue failed: OperationalError")
        assert run_step(engine, "submit", job_id, seq=0).action == "stop"
        found = engine.store.confirm_pending([job_id], due=0.0)  # too late: the producer raised
        assert found == ["canceled"]
        job = job_of(engine, job_id)
        assert (job.state, job.error_code) == (S.CANCELED, "enqueue_failed")
        assert provider.posts == 0 and engine.limits.in_use("default") == 0
