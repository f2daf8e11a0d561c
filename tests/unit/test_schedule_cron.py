"""A schedule's cron, worked out in-process: the run belongs to the latest instant at or before
it (checked against Celery's own arithmetic), bad expressions are refused with the fix, and a
run is named after its schedule and UTC instant.

Schedules stored in Redis, the CLI and beats firing a schedule once are in
tests/integration/test_schedules.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.schedule_helpers import at, celery_app
from worker.batch.schedules import latest_instant, parse_cron, run_name
from worker.errors import InvalidRequest

UTC_APP = celery_app("redis://127.0.0.1:1/0")  # cron arithmetic only; never connects


@pytest.mark.parametrize(
    ("cron", "moment", "instant"),
    [
        ("0 2 * * *", "2025-03-10T02:00:00", "2025-03-10T02:00"),
        ("0 2 * * *", "2025-03-10T01:59:59", "2025-03-09T02:00"),
        ("*/15 * * * *", "2025-03-10T10:44:10", "2025-03-10T10:30"),
        ("30 9 * * 1", "2025-03-09T12:00:00", "2025-03-03T09:30"),  # the Monday before
        ("0 0 1 1 *", "2025-03-10T00:00:00", "2025-01-01T00:00"),
        ("0 12 29 2 *", "2025-03-01T00:00:00", "2024-02-29T12:00"),
        ("0 0 29 2 1", "2040-01-01T00:00:00", "2016-02-29T00:00"),  # a Monday, 24 years back
    ],
)
def test_a_run_belongs_to_the_latest_cron_instant_at_or_before_it(
    cron: str, moment: str, instant: str
) -> None:
    assert latest_instant(parse_cron(cron, app=UTC_APP), at(moment)) == at(instant)


@settings(max_examples=150, deadline=None)
@given(
    minute=st.sampled_from(["*", "0", "*/7", "5,35", "59"]),
    hour=st.sampled_from(["*", "2", "*/5", "9-17"]),
    dom=st.sampled_from(["*", "1", "15", "28-31"]),
    dow=st.sampled_from(["*", "1", "0,6"]),
    moment=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_no_cron_instant_lies_between_the_found_instant_and_the_moment(
    minute: str, hour: str, dom: str, dow: str, moment: datetime
) -> None:
    cron = parse_cron(f"{minute} {hour} {dom} * {dow}", app=UTC_APP)
    when = moment.replace(tzinfo=UTC)
    found = latest_instant(cron, when)
    assert found <= when
    # Celery's own arithmetic: the next instant after the found one is after the moment.
    last, delta, _ = cron.remaining_delta(found)
    following = last + delta  # a timedelta or a celery ffwd
    assert following > when


@pytest.mark.parametrize(
    "expression", ["0 2 * *", "61 * * * *", "* 25 * * *", "every day", "0 0 31 2 *"]
)
def test_a_bad_cron_expression_is_refused_with_the_fix(expression: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_cron(expression, app=UTC_APP)
    field, message = exc.value.problems[0]
    assert field == "cron" and "e.g. '0 2 * * *'" in message


def test_a_run_is_named_after_its_schedule_and_utc_instant() -> None:
    assert run_name("nightly", at("2025-03-10T02:00")) == "nightly-20250310T0200Z"
