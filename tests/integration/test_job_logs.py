"""One INFO line per job transition, with job id, key alias, model and state; no secret.

The recovery guide in docs/operations.md greps for these lines, and every documented
worker command runs at the INFO level that writes them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import load_settings
from simulator.testing import SimulatorProcess
from tasks import cancel, enqueue_render
from tests.fleet import point_this_process_at
from tests.pipeline_helpers import RecordingEngine, drive, make_engine, make_job
from worker.infra.logs import redact

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-logs-0123456789"
MODEL = "doubao-seedance-2-0-fast-260128"
LINE = re.compile(r"job (rdj_\w+) key=(\S+) state=(\w+) model=(\S+)")


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=redis_url, api_key=KEY, base_url=sim.url, allow_local_urls=True,
        output_dir=tmp_path / "renders", poll_first_delay=0.2, poll_interval_min=0.1,
        poll_interval_max=0.3,
    )  # fmt: skip
    eng = make_engine(settings)
    yield eng
    eng.close()


def _transitions(caplog: pytest.LogCaptureFixture, job_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(f"job {job_id} key=")]


def test_each_transition_of_a_job_is_one_info_line_with_id_key_model_and_state(
    engine: RecordingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = make_job(engine, prompt="a boat")
    with caplog.at_level(logging.INFO):
        drive(engine, job_id)
    records = _transitions(caplog, job_id)
    states = [LINE.match(r.getMessage()).group(3) for r in records]  # type: ignore[union-attr]
    # "running" is logged when a poll first finds the task running, if one does.
    assert [s for s in states if s != "running"] == [
        "submitting", "submitted", "generated", "downloading", "done",
    ]  # fmt: skip
    assert states.count("running") <= 1
    for record in records:
        assert record.levelno == logging.INFO
        job, key, state, model = LINE.match(record.getMessage()).groups()  # type: ignore[union-attr]
        assert (job, key, model) == (job_id, "default", MODEL)
        # JSON logs carry the same facts as fields.
        assert (record.job_id, record.key, record.state) == (job_id, "default", state)  # type: ignore[attr-defined]
        assert KEY not in record.getMessage()


def test_the_producer_logs_queued_and_canceled_with_the_same_fields(
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    point_this_process_at(
        {"REDIS_URL": redis_url, "RELAYDANCE_API_KEY": KEY,
         "RELAYDANCE_OUTPUT_DIR": str(tmp_path / "renders")},
        monkeypatch,
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        job_id = enqueue_render({"model": MODEL, "prompt": "a kite"})
        assert cancel(job_id)
    lines = [r.getMessage() for r in _transitions(caplog, job_id)]
    assert len(lines) == 2, lines
    assert lines[0] == f"job {job_id} key=default state=queued model={MODEL}"
    assert lines[1].startswith(f"job {job_id} key=default state=canceled model={MODEL} ")
    assert "was=queued" in lines[1]  # the state it was canceled from


def test_the_recovery_guide_greps_for_the_submission_line_as_it_is_written(
    engine: RecordingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    documented = re.search(r"\n\s+(job rdj_\.\.\. key=<alias> state=submitted[^\n]*)", guide)
    assert documented, "docs/operations.md no longer shows the submission line"
    pattern = re.escape(documented.group(1).strip())
    for placeholder, shape in (
        (r"rdj_\.\.\.", r"rdj_\w+"), (r"<alias>", r"\S+"), (r"<model>", r"\S+"),
        (r"<remote\ task\ id>", r"\S+"), (r"\.\.\.s", r"[\d.]+s"), (r"\ \.\.\.", r"( .*)?"),
    ):  # fmt: skip
        pattern = pattern.replace(placeholder, shape)
    job_id = make_job(engine)
    with caplog.at_level(logging.INFO):
        drive(engine, job_id)
    submitted = [
        r.getMessage() for r in _transitions(caplog, job_id) if "=submitted" in r.getMessage()
    ]
    assert len(submitted) == 1 and re.fullmatch(pattern, submitted[0]), (pattern, submitted)


def _documented_commands() -> Iterator[tuple[str, str]]:
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*/README.md")]:
        text = path.read_text().replace("\\\n", " ")
        for match in re.finditer(r"celery -A worker (worker|beat)\b[^\n`|]*", text):
            yield path.name, match.group(0)


def test_every_documented_worker_and_beat_command_runs_at_info_level() -> None:
    commands = list(_documented_commands())
    assert len(commands) >= 6
    for where, command in commands:
        assert "--loglevel INFO" in command, f"{where}: {command}"


def test_transition_lines_hold_nothing_the_redaction_would_change(
    engine: RecordingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = make_job(engine, prompt="a boat")
    with caplog.at_level(logging.INFO):
        drive(engine, job_id)
    for record in _transitions(caplog, job_id):
        assert redact(record.getMessage(), secrets=[KEY]) == record.getMessage()
