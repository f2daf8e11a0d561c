"""The job store's own contract: every change is one compare-and-set, and a final job
leaves the schedule and expires. The money steps rest on exactly these answers."""

from __future__ import annotations

import pytest

from tests.contracts.harness import MoneyContract, job_of
from tests.pipeline_helpers import RecordingEngine, make_job
from worker.job.record import JobState

S = JobState


class StoreContract(MoneyContract):
    def test_a_change_applies_only_in_its_states_and_says_what_it_found(
        self, engine: RecordingEngine
    ) -> None:
        job_id = make_job(engine)
        assert engine.store.change(job_id, states={S.SUBMITTED}, to=S.RUNNING) == (
            False, S.QUEUED,
        )  # fmt: skip
        assert engine.store.change(job_id, states={S.QUEUED}, to=S.SUBMITTING) == (True, S.QUEUED)
        assert engine.store.change("rdj_missing", states=None, set={"x": 1}) == (False, None)
        assert engine.store.counts()[S.SUBMITTING.value] == 1
        assert engine.store.in_state(S.SUBMITTING) == [job_id]
        assert engine.store.in_state(S.QUEUED) == []

    @pytest.mark.parametrize(
        ("guard", "applies"),
        [
            ({"where": {"seq": 0}}, True),
            ({"where": {"seq": 1}}, False),
            ({"where": {"billing": ""}}, True),  # a missing field counts as empty
            ({"where_not": {"seq": 0}}, False),
            ({"below": {"submit_claim": 5}}, True),  # no claim yet counts as -1
            ({"below": {"submit_claim": -1}}, False),
        ],
    )
    def test_the_guards_hold(
        self, engine: RecordingEngine, guard: dict[str, dict[str, object]], applies: bool
    ) -> None:
        job_id = make_job(engine)
        applied, _ = engine.store.change(job_id, states=None, set={"mark": "1"}, **guard)
        assert applied is applies
        assert (job_of(engine, job_id).extra.get("mark") == "1") is applies

    def test_a_claim_only_moves_forward(self, engine: RecordingEngine) -> None:
        job_id = make_job(engine)
        claim = {"states": None, "set": {"submit_claim": 3}, "below": {"submit_claim": 3}}
        assert engine.store.change(job_id, **claim)[0]
        assert not engine.store.change(job_id, **claim)[0]
        assert not engine.store.change(
            job_id, states=None, set={"submit_claim": 2}, below={"submit_claim": 2}
        )[0]
        assert job_of(engine, job_id).submit_claim == 3

    def test_a_final_job_leaves_the_schedule_and_expires(self, engine: RecordingEngine) -> None:
        job_id = make_job(engine)
        assert engine.store.active_count() == 1
        assert engine.store.fail(job_id, code="x", message="no")
        assert engine.store.active_count() == 0 and engine.store.due(before=1e12) == []
        assert (
            0 < engine.redis.ttl(engine.store.key(job_id)) <= engine.settings.job_retention_seconds
        )
        assert not engine.store.cancel(job_id)  # final is final
        assert job_of(engine, job_id).state is S.FAILED
