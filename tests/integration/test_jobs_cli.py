"""``relaydance jobs``: any state, newest first, filtered and paged by the jobs page's index.

Real redis-server; no worker: jobs are written as the store writes them and moved by its
own compare-and-sets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from config.settings import get_settings
from tests.batch_requests import req
from tests.pipeline_helpers import RecordingEngine, make_engine
from worker.batch import Batches, parse_records
from worker.cli.main import main
from worker.job.engine import reset_engine
from worker.job.listing import JobFilter, list_jobs
from worker.job.record import JobState
from worker.render.validation import validate_request

MODEL = "doubao-seedance-2-0-fast-260128"


@pytest.fixture
def engine(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingEngine]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RELAYDANCE_API_KEYS", '{"tenant-a": "sk-a"}')
    monkeypatch.setenv("RELAYDANCE_API_KEY", "sk-test-jobs")
    get_settings.cache_clear()
    reset_engine()
    fake = make_engine(get_settings())
    yield fake
    fake.close()
    get_settings.cache_clear()
    reset_engine()


def job_at(engine: RecordingEngine, prompt: str, *, age: float, alias: str = "default",
           model: str = MODEL, state: JobState | None = None) -> str:  # fmt: skip
    """A job created ``age`` seconds ago, moved to ``state``."""
    request = validate_request({"model": model, "prompt": prompt, "seconds": 5})
    job_id = f"rdj_{abs(hash((prompt, age))) % 16**32:032x}"
    now = time.time() - age
    fields = engine.store.new_fields(request=request.model_dump(mode="json"), alias=alias,
                                     cost=0.7, now=now, due=now + 60)  # fmt: skip
    pipe = engine.redis.pipeline()
    engine.store.queue_create(pipe, job_id, fields, due=now + 60)
    pipe.execute()
    if state is JobState.FAILED:
        engine.store.fail(job_id, code="generation_failed", message="the model refused")
    elif state is not None:
        engine.store._change(job_id, states=None, to=state)
    return job_id


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["jobs", *args])
    return result.exit_code, result.stdout, result.stderr


def test_final_states_are_listed_newest_first(engine: RecordingEngine) -> None:
    old = job_at(engine, "an old boat", age=300, state=JobState.DONE)
    new = job_at(engine, "a new boat", age=10, state=JobState.DONE)
    failed = job_at(engine, "a failed fox", age=20, state=JobState.FAILED)
    canceled = job_at(engine, "a canceled cat", age=30, state=JobState.CANCELED)
    code, out, _ = run("--state", "done")
    assert code == 0, out
    assert [line.split()[2] for line in out.splitlines()] == [new, old]
    _, out, _ = run("--state", "failed")
    assert failed in out and "error: generation_failed: the model refused" in out
    _, out, _ = run("--state", "canceled")
    assert canceled in out and "a canceled cat" in out
    _, everything, _ = run()
    assert [line.split()[2] for line in everything.splitlines() if line.startswith("20")] == [
        new, failed, canceled, old]  # fmt: skip


def test_since_key_model_and_batch_narrow_the_list(engine: RecordingEngine) -> None:
    recent = job_at(engine, "recent", age=60)
    job_at(engine, "two hours old", age=7200)
    tenant = job_at(engine, "tenant's", age=30, alias="tenant-a")
    other_model = job_at(engine, "1080p", age=40, model="doubao-seedance-2-0-1080p")
    sub = Batches(engine).submit(parse_records([req("batched a"), req("batched b")]), name="wk1")
    batched = set(Batches(engine).job_ids(sub.batch_id).values())
    _, out, _ = run("--since", "1h", "--json")
    listed = [json.loads(line)["job_id"] for line in out.splitlines()]
    assert set(listed) == {recent, tenant, other_model, *batched}
    assert all("prompt" in json.loads(line) for line in out.splitlines())
    assert [json.loads(x)["job_id"] for x in run("--key", "tenant-a", "--json")[1].splitlines()] \
        == [tenant]  # fmt: skip
    _, out, _ = run("--model", "doubao-seedance-2-0-1080p")
    assert other_model in out and recent not in out
    _, out, _ = run("--batch", "wk1")
    assert {line.split()[2] for line in out.splitlines()} == batched
    code, _, err = run("--since", "last tuesday")
    assert code == 2 and "--since" in err and "30m" in err
    code, _, err = run("--batch", "no-such-batch")
    assert code == 2 and "no batch 'no-such-batch'" in err


def test_limit_pages_and_after_goes_on_where_the_page_ended(engine: RecordingEngine) -> None:
    ids = [job_at(engine, f"shot {i}", age=100 - i, state=JobState.DONE) for i in range(5)]
    job_at(engine, "still queued", age=1)
    code, out, err = run("--state", "done", "--limit", "2")
    assert code == 0
    first = [line.split()[2] for line in out.splitlines()]
    assert first == [ids[4], ids[3]]
    assert f"more: relaydance jobs --state done --limit 2 --after {ids[3]}" in err
    _, out, err = run("--state", "done", "--limit", "2", "--after", ids[3])
    assert [line.split()[2] for line in out.splitlines()] == [ids[2], ids[1]]
    _, out, err = run("--state", "done", "--limit", "2", "--after", ids[1])
    assert [line.split()[2] for line in out.splitlines()] == [ids[0]]
    assert "more:" not in err


def test_a_page_filled_mid_chunk_still_says_where_the_next_one_starts(
    engine: RecordingEngine,
) -> None:
    ids = [job_at(engine, f"clip {i}", age=50 - i, state=JobState.DONE) for i in range(3)]
    page = list_jobs(engine.redis, engine.store, JobFilter(state="done"), page_size=2)
    assert [r.id for r in page.rows] == [ids[2], ids[1]]
    assert page.next_after == ids[1]  # the chunk (all three) was not read to its end


def test_submit_unknown_jobs_keep_their_evidence_and_the_decision(
    engine: RecordingEngine,
) -> None:
    job_id = job_at(engine, "in doubt", age=5)
    engine.store._change(job_id, states=None, to=JobState.SUBMIT_UNKNOWN,
                        set={"error_message": "read timeout after the POST"})  # fmt: skip
    _, out, err = run("--state", "submit_unknown")
    assert "evidence: read timeout after the POST" in out
    assert "relaydance resubmit JOB_ID" in err
    _, _, err = run()
    assert "1 job(s) may have been billed without an answer" in err
