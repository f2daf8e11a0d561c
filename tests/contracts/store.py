"""The job store's own contract: every change is one compare-and-set by a declared
transition, and a final job leaves the schedule and expires. The money steps rest on
exactly these answers, from fakeredis and from Redis alike."""

from __future__ import annotations

import pytest

from tests.contracts.harness import MoneyContract, job_of
from tests.pipeline_helpers import RecordingEngine, make_job
from worker.job.record import JobState
from worker.job.transitions import SUBMIT_ACCEPTED, SUBMIT_STARTED

S = JobState
ANY = set(JobState)


class StoreContract(MoneyContract):
    def test_a_transition_applies_only_from_its_states_and_says_what_it_found(
        self, engine: RecordingEngine
    ) -> None:
        job_id = make_job(engine)
        assert engine.store.apply(job_id, SUBMIT_ACCEPTED) == (False, S.QUEUED)
        assert engine.store.apply(job_id, SUBMIT_STARTED) == (True, S.QUEUED)
        job = job_of(engine, job_id)
        assert (job.state, job.billing.value, job.submit_attempts) == (S.SUBMITTING, "pending", 1)
        assert engine.store.apply("rdj_missing", SUBMIT_STARTED) == (False, None)
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
        applied, _ = engine.store.update_fields(job_id, states=ANY, set={"mark": "1"}, **guard)
        assert applied is applies
        assert (job_of(engine, job_id).extra.get("mark") == "1") is applies

    def test_a_claim_only_moves_forward(self, engine: RecordingEngine) -> None:
        job_id = make_job(engine)

        def claim(n: int) -> bool:
            change = {"set": {"submit_claim": n}, "below": {"submit_claim": n}}
            return engine.store.update_fields(job_id, states=ANY, **change)[0]

        assert claim(3)
        assert not claim(3) and not claim(2)
        assert job_of(engine, job_id).submit_claim == 3

    def test_a_final_job_leaves_the_schedule_and_expires(self, engine: RecordingEngine) -> None:
        job_id = make_job(engine)
        assert engine.store.active_count() == 1
        assert engine.store.fail(job_id, code="x", message="no")
        assert engine.store.active_count() == 0 and engine.store.due(before=1e12) == []
        ttl = engine.redis.ttl(engine.store.key(job_id))
        assert 0 < ttl <= engine.settings.job_retention_seconds
        assert not engine.store.cancel(job_id)  # final is final
        assert job_of(engine, job_id).state is S.FAILED
