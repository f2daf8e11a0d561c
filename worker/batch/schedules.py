"""Recurring batches: a cron expression, a batch file's content, a key and a budget.

Schedules live in Redis twice: our own record (``rd:schedule:<name>``: the validated
requests, stored at ``add`` time so the beat and worker hosts need no file) and a
celery-redbeat entry that makes beat send ``relaydance.batch_run`` at each cron instant.
Redbeat's lock keeps one beat active however many run. Each run creates the batch
``<schedule>-<instant>`` (e.g. ``nightly-20250101T0200Z``), and creation by name is
idempotent, so even a double fire (two beats during a lock hand-over) yields one batch.

The instant a run belongs to is the latest cron instant at or before the moment beat
fired it (read from the redbeat entry), so a worker's clock skew or a queued message
cannot move a run onto another instant. Cron fields are read in Celery's timezone (UTC
unless configured otherwise).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab

from config.task_names import BATCH_RUN as SCHEDULE_TASK
from worker.batch.budget import from_micros, to_micros
from worker.batch.parse import ParsedBatch, parse_records
from worker.batch.plan import refuse_unsubmittable
from worker.batch.service import Batches
from worker.errors import InvalidRequest
from worker.job.engine import Engine
from worker.job.record import PREFIX
from worker.render.aliases import alias_problem
from worker.render.local_media import allowed_dirs

__all__ = [
    "SCHEDULE_TASK",
    "Schedule",
    "Schedules",
    "latest_instant",
    "next_instant",
    "parse_cron",
    "run_name",
]

logger = logging.getLogger(__name__)

ENTRY_PREFIX = "relaydance-batch:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# How far back a run's instant is looked for: 29 February on a given weekday recurs
# within 28 years (Celery's crontab needs both the day of month and the day of week).
_SEARCH_MINUTES = 29 * 366 * 24 * 60


def parse_cron(expression: str, *, app: Celery | None = None) -> crontab:
    """A five-field cron expression (minute hour day-of-month month day-of-week)."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidRequest(
            [("cron", f"{expression!r} has {len(fields)} fields; give five: minute hour "
              "day-of-month month day-of-week, e.g. '0 2 * * *'")]
        )  # fmt: skip
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month, day_of_week=day_of_week, app=app)  # fmt: skip
    except ValueError as exc:
        raise InvalidRequest(
            [("cron", f"{expression!r}: {exc}; e.g. '0 2 * * *' is 02:00 every day")]
        ) from None


def latest_instant(schedule: crontab, at: datetime) -> datetime:
    """The latest instant of ``schedule`` at or before ``at`` (in the schedule's timezone).

    Celery's crontab answers only "the next instant after", the question beat asks, so
    this bisects over whole minutes for the latest moment whose next instant is still at
    or before ``at``: that next instant is the answer. Beat's own arithmetic names the
    run, so a run can never be named after an instant beat would not fire at.
    """
    end = at.astimezone(UTC).replace(second=0, microsecond=0)  # instants are whole minutes

    def before(minutes: int) -> datetime:
        return next_instant(schedule, end - timedelta(minutes=minutes))

    never = InvalidRequest([("cron", "the expression never fires; check its day and month")])
    try:
        if before(_SEARCH_MINUTES) > end:
            raise never
        # The smallest step back whose next instant is not after ``end``.
        low, high = 1, _SEARCH_MINUTES
        while low < high:
            middle = (low + high) // 2
            if before(middle) <= end:
                high = middle
            else:
                low = middle + 1
        return before(low).astimezone(schedule.tz)
    except RuntimeError:  # Celery gives up rolling over a date that never comes
        raise never from None


def next_instant(schedule: crontab, after: datetime) -> datetime:
    """The first instant of ``schedule`` after ``after``: when beat will fire next."""
    last, delta, _ = schedule.remaining_delta(after)
    result: datetime = last + delta  # a timedelta, or Celery's ffwd for calendar steps
    return result


def run_name(schedule: str, instant: datetime) -> str:
    """The batch name of one run: ``<schedule>-<UTC instant>``."""
    return f"{schedule}-{instant.astimezone(UTC):%Y%m%dT%H%MZ}"


@dataclass(frozen=True)
class Schedule:
    """One recurring batch."""

    name: str
    cron: str
    alias: str
    budget_usd: float | None
    lines: int
    source: str
    created_at: float
    runs: int = 0
    last_run_at: float | None = None
    last_batch: str | None = None
    next_run: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "name": self.name,
            "cron": self.cron,
            "key": self.alias,
            "budget_usd": self.budget_usd,
            "lines": self.lines,
            "source": self.source,
            "created_at": self.created_at,
            "runs": self.runs,
            "last_run_at": self.last_run_at,
            "last_batch": self.last_batch,
            "next_run": self.next_run.isoformat() if self.next_run else None,
        }


class Schedules:
    """Add, list, remove and run recurring batches."""

    def __init__(self, engine: Engine, app: Celery) -> None:
        self.engine = engine
        self.app = app
        self.redis = engine.redis
        self.index_key = f"{PREFIX}:schedules"

    def key(self, name: str) -> str:
        """The Redis key of a schedule's record."""
        return f"{PREFIX}:schedule:{name}"

    def _entry(self, name: str, schedule: crontab | None = None, **kwargs: Any) -> Any:
        from redbeat import RedBeatSchedulerEntry  # needs the app's redbeat configuration

        return RedBeatSchedulerEntry(
            name=ENTRY_PREFIX + name,
            task=SCHEDULE_TASK,
            schedule=schedule,
            kwargs={"schedule": name},
            app=self.app,
            **kwargs,
        )

    def add(
        self,
        name: str,
        *,
        cron: str,
        parsed: ParsedBatch,
        key: str = "default",
        budget: float | None = None,
        replace: bool = False,
    ) -> Schedule:
        """Store a schedule and its requests; refuses an invalid file or an unknown key."""
        problems: list[tuple[str, str]] = []
        if not _NAME.match(name):
            problems.append(("name", f"{name!r}: use letters, digits, - and _ (at most 64)"))
        bad_key = alias_problem(key, self.engine.settings.keys())
        if bad_key:
            problems.append(("key", bad_key))
        if budget is not None and not budget >= 0:
            problems.append(("budget", f"{budget} is negative; give USD >= 0"))
        if problems:
            raise InvalidRequest(problems)
        schedule = parse_cron(cron, app=self.app)
        refuse_unsubmittable(parsed)
        if self.redis.exists(self.key(name)) and not replace:
            raise InvalidRequest(
                [("name", f"a schedule {name!r} exists; remove it first (schedule remove)")]
            )
        now = time.time()
        record: dict[Any, Any] = {  # redis-py types hset keys invariantly
            "cron": cron,
            "alias": key,
            "budget_micros": "" if budget is None else str(to_micros(budget)),
            "lines": json.dumps([[ln.line, ln.record()] for ln in parsed.lines]),
            "source": parsed.source,
            "created_at": repr(now),
            "runs": "0",
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key(name))
        pipe.hset(self.key(name), mapping=record)
        pipe.sadd(self.index_key, name)
        pipe.execute()
        self._entry(name).delete()  # a replaced entry must not keep its old run times
        # last_run_at = now: a fresh entry would otherwise be due at once.
        self._entry(name, schedule, last_run_at=datetime.now(UTC)).save()
        logger.info(
            "schedule %s added: cron=%r key=%s lines=%d", name, cron, key, len(parsed.lines)
        )
        return self.get(name)

    def get(self, name: str) -> Schedule:
        """One schedule; raises :class:`LookupError` when there is none."""
        raw = self.redis.hgetall(self.key(name))
        if not raw:
            raise LookupError(f"no schedule {name!r}")
        data = {str(k): str(v) for k, v in raw.items()}
        next_run = None
        try:
            from redbeat import RedBeatSchedulerEntry

            entry = RedBeatSchedulerEntry.from_key(self._entry(name).key, app=self.app)
            if entry.last_run_at is not None:
                next_run = next_instant(entry.schedule, entry.last_run_at)
        except KeyError:
            pass
        budget = data.get("budget_micros")
        return Schedule(
            name=name,
            cron=data["cron"],
            alias=data["alias"],
            budget_usd=from_micros(int(budget)) if budget else None,
            lines=len(json.loads(data["lines"])),
            source=data.get("source", ""),
            created_at=float(data["created_at"]),
            runs=int(data.get("runs", "0")),
            last_run_at=float(data["last_run_at"]) if data.get("last_run_at") else None,
            last_batch=data.get("last_batch"),
            next_run=next_run,
        )

    def list(self) -> list[Schedule]:
        """Every schedule, by name."""
        schedules = []
        for name in sorted(str(n) for n in self.redis.smembers(self.index_key)):
            try:
                schedules.append(self.get(name))
            except LookupError:
                self.redis.srem(self.index_key, name)
        return schedules

    def remove(self, name: str) -> bool:
        """Delete a schedule and its beat entry; returns whether it existed."""
        self._entry(name).delete()
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key(name))
        pipe.srem(self.index_key, name)
        existed, _ = pipe.execute()
        return bool(existed)

    def _fired_at(self, name: str) -> datetime | None:
        from redbeat import RedBeatSchedulerEntry

        try:
            meta = RedBeatSchedulerEntry.load_meta(self._entry(name).key, app=self.app)
        except (KeyError, ValueError):
            return None
        fired = meta.get("last_run_at")
        return fired if isinstance(fired, datetime) else None

    def run(self, name: str, *, at: datetime | None = None) -> str | None:
        """Create (or continue) the batch of the run at ``at`` (default: when beat fired)."""
        raw = self.redis.hgetall(self.key(name))
        if not raw:
            logger.warning("schedule %s: no such schedule (removed?); run skipped", name)
            return None
        self.redis.hincrby(self.key(name), "runs", 1)
        data = {str(k): str(v) for k, v in raw.items()}
        moment = at or self._fired_at(name) or datetime.now(UTC)
        instant = latest_instant(parse_cron(data["cron"], app=self.app), moment)
        parsed = parse_records(
            [(line, request) for line, request in json.loads(data["lines"])],
            numbered=True,
            # The same file checks as the command line, by this worker's allow-list.
            media_dirs=allowed_dirs(self.engine.settings),
            source=data.get("source", name),
            key=data["alias"],
        )
        if parsed.invalid:  # the catalogue or a file changed since the schedule was added
            logger.warning(
                "schedule %s: %d lines no longer valid; skipped: %s",
                name, len(parsed.invalid), "; ".join(parsed.messages()),
            )  # fmt: skip
        budget = data.get("budget_micros")
        try:
            submission = Batches(self.engine).submit(
                parsed,
                key=data["alias"],
                budget=from_micros(int(budget)) if budget else None,
                name=run_name(name, instant),
                skip_invalid=True,
                schedule=name,
                resume_existing=False,
            )
        except InvalidRequest as exc:  # e.g. the key alias was removed from the settings
            logger.error("schedule %s run %s refused: %s", name, run_name(name, instant), exc)
            return None
        self.redis.hset(
            self.key(name),
            mapping={"last_run_at": repr(time.time()), "last_batch": submission.batch_id},
        )
        logger.info(
            "schedule %s run %s: batch %s (%s)", name, run_name(name, instant), submission.batch_id,
            "created" if submission.created else "already existed",
        )  # fmt: skip
        return submission.batch_id
