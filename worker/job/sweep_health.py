"""Is the sweep alive? One answer for ``doctor``, ``/metrics`` and the workers' own log.

Every worker runs the sweep loop (:mod:`worker.job.sweep_loop`) and marks itself in
``rd:sweep:loops`` at each tick; whoever holds the lock sweeps and records the time of the
last completed sweep in ``rd:sweep:last``. From those two:

- ``running``: a sweep completed within the last few intervals;
- ``starting``: none has yet, but the oldest worker running the loop is younger than one
  interval (a fleet that has just started, not a broken one);
- ``stopped``: workers run the loop, but no sweep has completed for several intervals
  (every sweep fails, or one hangs): jobs whose message was lost are not resumed;
- ``absent``: no worker runs the loop at all.

A stopped sweep is logged by one worker as one ERROR line with the fix, and again at most
hourly while it lasts (:func:`report_if_stopped`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import redis

from config.settings import Settings
from worker.infra.timefmt import span
from worker.job.alerts import Alert, raise_alert
from worker.job.engine import Engine
from worker.job.sweeper import LAST_SWEEP_KEY

__all__ = [
    "LOOPS_KEY",
    "STOPPED_ALERT_KEY",
    "SweepHealth",
    "report_if_stopped",
    "stopped_after",
    "sweep_health",
]

logger = logging.getLogger(__name__)

LOOPS_KEY = "rd:sweep:loops"  # sorted set: "<node>|<started at>" scored by the last tick
STOPPED_ALERT_KEY = "rd:sweep:stopped:alerted"  # set while the last loud line is recent
ALERT_EVERY = 3600

State = Literal["running", "starting", "stopped", "absent"]


@dataclass(frozen=True)
class SweepHealth:
    """What Redis says of the sweep."""

    state: State
    last_age: float | None  # seconds since the last completed sweep; None: never
    loops: int  # workers whose sweep loop ticked recently
    fleet_age: float | None  # seconds since the oldest of those started

    def describe(self) -> str:
        """The state in words, with what to do when it is wrong."""
        ran = "never" if self.last_age is None else f"{span(self.last_age)} ago"
        if self.state == "running":
            return f"the sweep ran {ran} ({self.loops} worker(s) run its loop)"
        if self.state == "starting":
            assert self.fleet_age is not None
            return (f"starting: the workers started {span(self.fleet_age)} ago and the first "
                    "sweep is on its way")  # fmt: skip
        if self.state == "stopped":
            return (
                f"THE SWEEP HAS STOPPED: last completed {ran}, while {self.loops} worker(s) "
                "run its loop, so jobs whose message was lost are not resumed; look for "
                "'sweep' errors in the workers' logs, and restart the workers"
            )
        return (f"no worker runs the sweep (last completed {ran}): start one with "
                "`celery -A worker worker --loglevel INFO`")  # fmt: skip


def stopped_after(settings: Settings) -> float:
    """Seconds without a completed sweep after which it counts as stopped."""
    return 3 * settings.sweep_interval_seconds + 10.0


def sweep_health(
    client: redis.Redis, settings: Settings, *, now: float | None = None
) -> SweepHealth:
    """Read the sweep's state from Redis."""
    now = time.time() if now is None else now
    window = stopped_after(settings)
    raw = client.get(LAST_SWEEP_KEY)
    last_age = None if raw is None else max(0.0, now - float(raw))
    members = client.zrangebyscore(LOOPS_KEY, now - window, "+inf")
    starts = [float(_text(m).rpartition("|")[2] or now) for m in members]
    fleet_age = max(0.0, now - min(starts)) if starts else None
    if last_age is not None and last_age <= window:
        state: State = "running"
    elif fleet_age is not None and fleet_age <= settings.sweep_interval_seconds + 10.0:
        state = "starting"
    elif starts:
        state = "stopped"
    else:
        state = "absent"
    return SweepHealth(state=state, last_age=last_age, loops=len(starts), fleet_age=fleet_age)


def report_if_stopped(engine: Engine) -> SweepHealth:
    """Tell a stopped sweep (one ERROR line by one worker, at most hourly, and the
    ``RELAYDANCE_ON_ALERT`` task), and that it works again; returns the health."""
    health = sweep_health(engine.redis, engine.settings)
    since = time.time() - (health.last_age or 0.0)
    if health.state == "stopped":
        raise_alert(engine, Alert(
            kind="sweep_stopped", alias="", provider="", reason=health.describe(), since=since,
            fix="look for 'sweep' errors in the workers' logs, and restart the workers",
        ))  # fmt: skip
    elif health.state == "running":
        ended = Alert(kind="sweep_stopped", alias="", provider="", reason=health.describe(),
                      since=since, state="ended")  # fmt: skip
        raise_alert(engine, ended)
    return health


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
