"""Batch clips named by a template (``--output-name``), and lines with their own ``id``.

Every name is checked before anything is enqueued: the template, path tricks in what it
gives (absolute, ``..``, NUL, reserved characters), and collisions between requests.
"""

from __future__ import annotations

import pytest

from tests.batch_requests import jsonl, req
from worker.batch import parse_records, parse_text, plan_batch
from worker.batch.naming import check_plan_names, check_template, job_name, name_problem, slug
from worker.batch.store import BatchRecord, Item
from worker.errors import InvalidRequest

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def names_of(requests: list[dict[str, object]], template: str, batch: str | None = "shoot") -> None:
    check_plan_names(template, plan_batch(parse_records(requests)), batch=batch, key="default",
                     now=NOW)  # fmt: skip


def problems_of(requests: list[dict[str, object]], template: str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRequest) as refused:
        names_of(requests, template)
    return refused.value.problems


def test_a_slug_is_the_prompt_in_lowercase_words_joined_by_dashes() -> None:
    assert slug("A paper boat, in the RAIN!") == "a-paper-boat-in-the-rain"
    assert slug("Café über déjà-vu") == "cafe-uber-deja-vu"
    assert slug("@image1 turns its head slowly towards the camera in golden light") == (
        "image1-turns-its-head-slowly-towards-the"
    )
    assert slug("!!!") == "clip" and slug("") == "clip"


def test_the_template_gives_each_line_its_name_from_its_fields() -> None:
    parsed = parse_records([req("A paper boat", id="sh010"), req("a fox", id="sh020")])
    plan = plan_batch(parsed)
    record = BatchRecord(id="rdb_" + "a" * 32, name="shoot", alias="default", created_at=NOW,
                         source="", digest="", lines=plan.line_items, invalid=[],
                         line_ids=plan.line_ids,
                         output_template="{batch}/{date}/{line:04d}-{id}-{slug}-{seconds}s")  # fmt: skip
    first = plan.items[0]
    item = Item(first.index, first.fingerprint, first.cost_micros,
                first.request.model_dump(mode="json"))  # fmt: skip
    assert job_name(record, item, "rdj_x") == "shoot/2026-01-01/0001-sh010-a-paper-boat-5s"
    no_template = BatchRecord(**{**record.__dict__, "output_template": None})
    assert job_name(no_template, item, "rdj_x") is None  # the clip is <job id>.mp4


@pytest.mark.parametrize(
    ("template", "says"),
    [("{line:04d}-{slug}", "two batches write the same file"),
     ("{batch}/{nope}", "{nope} is not a field"),
     ("{batch.__class__}", "is not a field"),
     ("{batch[0]}", "is not a field"),
     ("{batch!r}/{line}", "plain field"),
     ("{batch", "is not a template")],
)  # fmt: skip
def test_a_bad_template_is_refused_naming_the_option(template: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_template(template)
    field, message = refused.value.problems[0]
    assert field == "output_name" and says in message


@pytest.mark.parametrize(
    ("name", "says"),
    [("/etc/cron.d/x", "is absolute"), ("a/../../b", "'..'"), ("a//b", "empty"),
     ("a/.hidden", "hidden"), ("nul\x00byte", "NUL"), ("tab\there", "control"),
     ('a:b*c?"<>|', "reserve"), ("x" * 300, "longer than"), ("trailing. /x", "space or dot")],
)  # fmt: skip
def test_names_with_path_tricks_are_refused(name: str, says: str) -> None:
    problem = name_problem(name)
    assert problem is not None and says in problem


def test_names_from_the_lines_own_fields_are_checked_per_line() -> None:
    problems = problems_of([req("a", id="ok"), req("b", id="../../etc/passwd")],
                           "{batch}/{id}")  # fmt: skip
    assert problems == [("line 2: output_name",
                         "'shoot/../../etc/passwd' has an empty, '.' or '..' part; change "
                         "--output-name or the line's fields")]  # fmt: skip


def test_two_requests_with_one_name_are_refused_naming_both_lines() -> None:
    problems = problems_of([req("A boat"), req("a boat!", seconds=6), req("a fox")],
                           "{batch}/{slug}")  # fmt: skip
    assert problems == [("line 2: output_name", "'shoot/a-boat' is line 1's name too; add "
                         "{line} or {id} to --output-name")]  # fmt: skip
    # Lines that repeat one request share its job, and so its name: no collision.
    names_of([req("a boat"), req("a boat")], "{batch}/{slug}")
    # Names that differ only in case are one file on macOS and Windows volumes.
    assert problems_of([req("x", id="A"), req("y", id="a")], "{batch}/{id}")


def test_job_in_the_template_is_unique_per_request() -> None:
    names_of([req("same words"), req("same words", seconds=6)], "{job}")


def test_a_line_id_is_text_unique_in_its_batch_and_a_csv_column() -> None:
    parsed = parse_text(jsonl([req("a", id="sh010"), req("b", id=20), req("c", id="sh010"),
                               req("d", id=["x"]), req("e", id="bad\nid")]), fmt="jsonl")  # fmt: skip
    assert [(ln.line, ln.line_id) for ln in parsed.lines] == [(1, "sh010"), (2, "20")]
    messages = parsed.messages()
    assert "line 3: id: 'sh010' is line 1's id too" in messages[0]
    assert "line 4: id: give the line's id as text" in messages[1]
    assert "line 5: id: give an id of 1 to 128 printable characters" in messages[2]
    csv = parse_text("id,model,prompt,seconds\nsh030,doubao-seedance-2-0-fast-260128,a fox,5\n",
                     fmt="csv")  # fmt: skip
    assert csv.lines[0].line_id == "sh030"
    assert csv.lines[0].record()["id"] == "sh030"
