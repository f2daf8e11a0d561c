"""Batches with a real worker and the simulator: clips named by a template, a retake beside
the first take, and the report's rows mapping lines to files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.batch_fleet import CLIP, Stack, _wait
from tests.batch_requests import FAST, req
from worker.cli.batch import batch


def test_clips_are_named_by_the_template_and_the_report_maps_lines_to_files(
    live: Stack, tmp_path: Path
) -> None:
    import csv

    file = tmp_path / "shots.csv"
    file.write_text(
        "id,model,prompt,seconds\n"
        "sh010,doubao-seedance-2-0-fast-260128,A paper boat in the rain,5\n"
        "sh020,doubao-seedance-2-0-fast-260128,A fox in the snow,5\n"
        "sh030,doubao-seedance-2-0-fast-260128,A paper boat in the rain,5\n"
    )
    template = "{batch}/{line:04d}-{id}-{slug}"
    result = CliRunner().invoke(
        batch,
        [
            "submit",
            str(file),
            "--name",
            "shoot",
            "--output-name",
            template,
            "--wait",
            "--timeout",
            "60",
        ],
    )
    assert result.exit_code == 0, (result.output, live.log.read_text()[-3000:])
    out = Path(live.env["RELAYDANCE_OUTPUT_DIR"])
    first = out / "shoot" / "0002-sh010-a-paper-boat-in-the-rain"
    second = out / "shoot" / "0003-sh020-a-fox-in-the-snow"
    assert first.with_suffix(".mp4").is_file() and second.with_suffix(".mp4").is_file()
    assert sorted(p.name for p in (out / "shoot").iterdir()) == sorted(
        [first.name + ".mp4", first.name + ".json", second.name + ".mp4", second.name + ".json"]
    )
    manifest = json.loads(first.with_suffix(".json").read_text())
    assert manifest["output_name"] == "shoot/0002-sh010-a-paper-boat-in-the-rain"
    assert manifest["output_name_template"] == template
    assert manifest["batch"] == result.stdout.strip()
    report = CliRunner().invoke(batch, ["report", "shoot"])
    rows = {r["line"]: r for r in csv.DictReader(report.stdout.splitlines())}
    assert [(r["id"], r["model"], r["prompt"], r["seconds"]) for r in rows.values()] == [
        ("sh010", FAST, "A paper boat in the rain", "5"),
        ("sh020", FAST, "A fox in the snow", "5"),
        ("sh030", FAST, "A paper boat in the rain", "5"),
    ]  # fmt: skip
    assert rows["2"]["output_path"] == str(first.with_suffix(".mp4").resolve())
    assert rows["4"]["output_path"] == rows["2"]["output_path"]  # the same request, one clip


def test_a_retake_renders_beside_the_first_take_and_the_report_shows_the_latest(
    live: Stack,
) -> None:
    from tasks import retake
    from tasks.batches import batch_report as report_of
    from tasks.batches import enqueue_batch

    sub = enqueue_batch([req("a heron takes off", id="sh040")], budget=2 * CLIP, name="takes",
                        output_name="{batch}/{id}")  # fmt: skip
    _wait(sub.batch_id, live)
    first = report_of(sub.batch_id)[1][0]
    second = retake(str(first.job_id), prompt="a heron takes off at dawn")
    status = _wait(sub.batch_id, live)
    assert status.counts == {"done": 1}
    assert status.spent_usd == pytest.approx(2 * CLIP) == status.committed_usd
    row = report_of(sub.batch_id)[1][0]
    assert (row.job_id, row.earlier_takes, row.prompt) == (
        second,
        first.job_id,
        "a heron takes off at dawn",
    )
    out = Path(live.env["RELAYDANCE_OUTPUT_DIR"]) / "takes"
    assert row.output_path == str((out / "sh040-take2.mp4").resolve())
    assert first.output_path == str((out / "sh040.mp4").resolve())  # kept, not overwritten
    assert (out / "sh040.mp4").is_file() and (out / "sh040-take2.mp4").is_file()
    assert json.loads((out / "sh040-take2.json").read_text())["retake_of"] == first.job_id
    assert live.sim.stats()["submissions"] == 2
