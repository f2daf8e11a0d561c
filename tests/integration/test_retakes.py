"""Retakes: a finished job rendered again as a new, linked job; in a batch, as the line's
next take, within the batch's budget.

Real redis-server; no worker: the new job's chain is published to the test Redis and
nothing takes it, so what a retake records (and refuses) is read straight from the store.
A retake rendered by a real worker is in tests/integration/test_batches.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from tasks import enqueue_batch, enqueue_render, get_job, retake
from tasks.batches import batch_report, get_batch
from tests.batch_requests import req
from tests.fleet import point_this_process_at
from worker.cli.main import main
from worker.errors import InvalidRequest
from worker.job.engine import Engine, get_engine
from worker.job.record import JobState
from worker.web.jobs_page import Credentials, JobsPage, asgi_app

CLIP = 0.70
TOKEN = "ui-token-for-retakes-7akOx-0PPkBgx3ZzoMmmguXwYBqTGBrd"


@pytest.fixture
def engine(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    point_this_process_at({"REDIS_URL": redis_url, "RELAYDANCE_API_KEY": "sk-test-retakes",
                           "RELAYDANCE_OUTPUT_DIR": str(tmp_path / "renders"),
                           "RELAYDANCE_UI_TOKEN": TOKEN}, monkeypatch)  # fmt: skip
    return get_engine()


def finish(engine: Engine, job_id: str, state: JobState = JobState.DONE) -> None:
    """End a job as a worker would have: done (billed) or failed (not billed)."""
    billing = "billed" if state is JobState.DONE else "not_billed"
    assert engine.store._change(job_id, states=None, to=state, set={"billing": billing})[0]


def test_a_retake_is_a_new_job_from_the_old_request_linked_both_ways(engine: Engine) -> None:
    first = enqueue_render(req("a paper boat"), on_done="studio.record")
    finish(engine, first)
    second = retake(first, prompt="a paper boat, at dusk")
    new, old = get_job(second), get_job(first)
    assert new.state is JobState.QUEUED and not new.enqueue_pending  # sent and confirmed
    assert new.request["prompt"] == "a paper boat, at dusk"
    assert {k: v for k, v in new.request.items() if k != "prompt"} == {
        k: v for k, v in old.request.items() if k != "prompt"}  # fmt: skip
    assert new.retake_of == first and old.retakes == [second]
    assert new.on_done == "studio.record"  # the producer hears of the new take too
    third = retake(first)  # the old prompt again
    assert get_job(third).request["prompt"] == "a paper boat"
    assert get_job(first).retakes == [second, third]


def test_a_retake_is_validated_as_always_and_only_of_a_finished_job(engine: Engine) -> None:
    running = enqueue_render(req("still going"))
    with pytest.raises(InvalidRequest, match="wait for it to end, or cancel it"):
        retake(running)
    finish(engine, running)
    with pytest.raises(InvalidRequest) as refused:
        retake(running, prompt="x" * 5000)
    assert refused.value.problems[0][0] == "prompt"
    assert get_job(running).retakes == []
    assert len(engine.redis.keys("rd:job:*")) == 1  # nothing else was recorded


def test_a_batch_retake_counts_against_the_budget_and_is_the_lines_latest_take(
    engine: Engine,
) -> None:
    sub = enqueue_batch([req("a fox", id="sh010"), req("a cat", id="sh020")], budget=3 * CLIP,
                        output_name="{batch}/{id}")  # fmt: skip
    jobs = {row.line: row.job_id for row in batch_report(sub.batch_id)[1]}
    finish(engine, jobs[1])
    finish(engine, jobs[2])
    assert get_batch(sub.batch_id).committed_usd == pytest.approx(2 * CLIP)
    take2 = retake(jobs[1], prompt="a fox in the snow")
    assert get_batch(sub.batch_id).committed_usd == pytest.approx(3 * CLIP)
    assert get_job(take2).output_name == f"{sub.batch_id}/sh010-take2"
    assert get_job(take2).batch == get_job(jobs[1]).batch
    with pytest.raises(InvalidRequest) as refused:
        retake(jobs[2])  # a fourth clip would take $2.80 past the $2.10 budget
    field, message = refused.value.problems[0]
    assert field == "budget" and f"relaydance batch resume {sub.batch_id} --budget USD" in message
    assert get_batch(sub.batch_id).committed_usd == pytest.approx(3 * CLIP)
    assert get_job(jobs[2]).retakes == []
    status, rows = batch_report(sub.batch_id)
    assert status.counts == {"done": 1, "queued": 1}  # the line renders again
    first = rows[0]
    assert (first.job_id, first.earlier_takes, first.prompt) == (
        take2,
        jobs[1],
        "a fox in the snow",
    )
    assert rows[1].earlier_takes is None
    finish(engine, take2)
    take3 = None
    with pytest.raises(InvalidRequest):
        take3 = retake(take2)
    assert take3 is None
    status = get_batch(sub.batch_id)
    assert status.spent_usd == pytest.approx(3 * CLIP) and status.finished


def test_a_failed_take_gives_its_reservation_back_for_the_next(engine: Engine) -> None:
    sub = enqueue_batch([req("a heron")], budget=CLIP)
    job = batch_report(sub.batch_id)[1][0].job_id
    assert job is not None
    finish(engine, job, JobState.FAILED)  # not billed: the reservation goes back
    assert get_batch(sub.batch_id).committed_usd == 0.0
    again = retake(job)
    _, rows = batch_report(sub.batch_id)
    assert (rows[0].job_id, rows[0].earlier_takes) == (again, job)


def test_the_cli_retakes_and_says_why_it_cannot(engine: Engine) -> None:
    job = enqueue_render(req("a lighthouse"))
    refused = CliRunner().invoke(main, ["retake", job])
    assert refused.exit_code == 2 and f"job {job} cannot be retaken" in refused.stderr
    finish(engine, job)
    done = CliRunner().invoke(main, ["retake", job, "--prompt", "a lighthouse in fog"])
    assert done.exit_code == 0, done.output
    assert get_job(done.stdout.strip()).retake_of == job
    missing = CliRunner().invoke(main, ["retake", "rdj_" + "0" * 32])
    assert missing.exit_code == 2 and "no job" in missing.stderr


def test_the_job_page_retakes_through_a_form_with_the_pages_csrf_token(engine: Engine) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    job = enqueue_render(req("a windmill"))
    page = JobsPage(Credentials(token=TOKEN))
    client = TestClient(Starlette(routes=[Mount("/ui", app=asgi_app(page, root="/ui"))]))
    client.post("/ui/login", data={"token": TOKEN, "next": "/ui/jobs"}, follow_redirects=False)
    assert 'id="retake"' not in client.get(f"/ui/jobs/{job}").text  # not finished yet
    assert client.get(f"/ui/jobs/{job}/retake").status_code == 409
    finish(engine, job)
    assert 'id="retake"' in client.get(f"/ui/jobs/{job}").text
    form = client.get(f"/ui/jobs/{job}/retake")
    assert form.status_code == 200 and ">a windmill</textarea>" in form.text
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    url = f"/ui/jobs/{job}/retake"
    assert client.post(url, data={"prompt": "x"}, follow_redirects=False).status_code == 403
    assert client.post(url, data={"prompt": "x", "csrf": token.group(1)},
                       headers={"Origin": "https://evil.test"},
                       follow_redirects=False).status_code == 403  # fmt: skip
    assert get_job(job).retakes == []
    answer = client.post(url, data={"prompt": "a windmill at night", "csrf": token.group(1)},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303
    new_id = answer.headers["location"].split("/jobs/")[1].split("?")[0]
    assert get_job(new_id).request["prompt"] == "a windmill at night"
    new_page = client.get(answer.headers["location"]).text
    assert f'id="retake-of"><code>{job}</code>' in new_page and "This is a retake" in new_page
    assert f"<code>{new_id}</code>" in client.get(f"/ui/jobs/{job}").text
    bad = client.post(url, data={"prompt": "", "csrf": token.group(1)}, follow_redirects=False)
    assert bad.status_code == 409 and "prompt" in bad.text
