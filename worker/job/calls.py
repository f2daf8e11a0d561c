"""Every call a step makes to the provider: the gate before it, the lessons after it.

Before a call, the gate (:meth:`worker.limits.KeyLimits.gate`) says whether it may go:
its provider's breaker, its key's account hold and, for a submission, its model's hold,
then the request rate. A call that may not go raises :class:`~worker.errors.Deferred`;
the step waits and the job keeps its place. After the call, the outcome teaches the fleet:

- a 5xx, a failed connection or a timeout counts against the route's breaker; enough in
  a row open it (:data:`provider_down` alert);
- an account fault (401, 402, a 403 for balance, access or a model) holds the key, or its
  use of one model (:data:`key_paused` / :data:`model_paused` alert); the step decides
  what the job does (a submission goes back to the head of its line, unbilled; a poll
  waits), and never fails it;
- an answer closes an open breaker and, from the probe of a paused key, lifts the hold:
  the waiting jobs move at once.

The calls that proved nothing about the provider (our own rate limit, a 429) teach
nothing. Nothing here reads a job record: the caller has it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import SecretStr

from worker.errors import (
    AccountFault,
    Deferred,
    RateLimited,
    RelayDanceError,
    RetryableStatus,
    TransientError,
)
from worker.job.advance import advance_ids
from worker.job.alerts import Alert, raise_alert
from worker.job.engine import Engine
from worker.job.record import Job
from worker.limits.rate import Gate
from worker.provider.client import ApiClient
from worker.provider.dialects import RemoteTask

__all__ = ["admit", "call", "perform", "read_task", "resume_line", "why_waiting"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_REASONS = {
    "breaker": "the provider is down (its breaker is open)",
    "held": "the key is paused",
    "model": "the key may not use this model (paused)",
}
_FIXES = {
    "unauthorized": "the provider refused the key: check or replace it in RELAYDANCE_API_KEYS",
    "insufficient_credits": "top up the provider account",
    "key_forbidden": "enable API access for this key at the provider",
    "model": "check which models the key may use (GET /v1/models at RelayDance)",
}


def admit(engine: Engine, job: Job, *, submit: bool = False) -> Gate:
    """The gate's word on a call of ``job``; raises :class:`Deferred` when it must wait."""
    model = str(job.request.get("model", "")) if submit else ""
    gate = engine.limits.gate(job.alias, job.id, submit=submit, model=model)
    if gate.wait > 0:
        why = _REASONS.get(gate.reason, "the key's request rate")
        raise Deferred(f"not sent: {why}", seconds=gate.wait, reason=gate.reason)
    if gate.probe:
        logger.info("job %s key=%s: probing the provider for a paused line", job.id, job.alias)
    return gate


def perform(
    engine: Engine,
    job: Job,
    gate: Gate,
    send: Callable[[ApiClient, SecretStr], T],
    *,
    submit: bool = False,
) -> T:
    """Make the call the gate admitted and learn from its outcome (see the module doc)."""
    client = engine.client_for(job.alias)
    key = engine.settings.key_for(job.alias)
    try:
        result = send(client, key)
    except AccountFault as exc:
        _account_fault(engine, job, exc, gate=gate, submit=submit)
        raise
    except RateLimited:
        raise  # our own count of the key's use was off: the limits learn from it elsewhere
    except RetryableStatus:
        _answered(engine, job, gate=gate, submit=False)  # a 408 or 409: the provider is up
        raise
    except TransientError as exc:
        _failed(engine, job, exc, gate=gate)
        raise
    except RelayDanceError:
        _answered(engine, job, gate=gate, submit=False)  # the provider answered: it is up
        raise
    _answered(engine, job, gate=gate, submit=submit)
    return result


def call(
    engine: Engine, job: Job, send: Callable[[ApiClient, SecretStr], T], *, submit: bool = False
) -> T:
    """:func:`admit` then :func:`perform`: a call with nothing to do between the two."""
    return perform(engine, job, admit(engine, job, submit=submit), send, submit=submit)


def read_task(task_id: str) -> Callable[[ApiClient, SecretStr], RemoteTask]:
    """The sender of a GET of ``task_id`` (a poll, a re-fetch), for :func:`call`."""
    return lambda client, key: client.get_task(task_id, api_key=key)


def _failed(engine: Engine, job: Job, exc: TransientError, *, gate: Gate) -> None:
    what = engine.limits.call_failed(
        job.alias, reason=f"{exc.code}: {exc}", holder=job.id if gate.probe else ""
    )
    if what == "opened":
        route = engine.limits.route(job.alias)
        state = engine.limits.breakers.state(route)
        raise_alert(engine, Alert(
            kind="provider_down", alias="", provider=route,
            reason=f"{engine.limits.breakers.threshold} calls in a row failed, the last: "
                   f"{exc.code}: {str(exc)[:200]}",
            since=state.since if state else 0.0,
            fix="none needed if the provider is down: submissions wait and polls back off, "
                "and the fleet probes it at most every "
                f"{engine.settings.pause_probe_seconds:g} s; if it lasts, check "
                "RELAYDANCE_BASE_URL (or the key's base_url) and the network",
        ))  # fmt: skip


def _answered(engine: Engine, job: Job, *, gate: Gate, submit: bool) -> None:
    """The provider answered: close its breaker; a probe's answer lifts its hold."""
    if gate.failures > 0 or gate.probe:
        since = engine.limits.call_succeeded(job.alias)
        if since is not None:
            route = engine.limits.route(job.alias)
            raise_alert(engine, Alert(
                kind="provider_down", alias="", provider=route, reason="a call succeeded",
                since=since, state="ended",
            ))  # fmt: skip
            for alias in _aliases_on(engine, route):
                resume_line(engine, alias)
    if not gate.probe:
        return
    only = "" if submit else "unauthorized"  # a read proves the key, not the balance
    lifted = engine.limits.lift(job.alias, only_kind=only)
    model = str(job.request.get("model", ""))
    parked = engine.limits.lift(job.alias, model=model) if submit else None
    for found, scope in ((lifted, None), (parked, model)):
        if found is not None and found.lifted:
            _lifted(engine, job, kind=found.kind, since=found.since, model=scope)
            resume_line(engine, job.alias, also=found.parked)


def _lifted(engine: Engine, job: Job, *, kind: str, since: float, model: str | None) -> None:
    kind_alert = "model_paused" if model else "key_paused"
    raise_alert(engine, Alert(
        kind=kind_alert, alias=job.alias if not model else f"{job.alias}/{model}",
        provider=engine.settings.provider_for(job.alias),
        reason=f"job {job.id} went through ({kind} is over)", since=since, state="ended",
    ))  # fmt: skip


def _account_fault(
    engine: Engine, job: Job, exc: AccountFault, *, gate: Gate, submit: bool
) -> None:
    model = str(job.request.get("model", "")) if submit and exc.scope == "model" else None
    kind = "model" if model else exc.code
    if kind == "model_forbidden":
        kind = "key_forbidden"  # a read's 403 naming a model still says the key is refused
    new, refusals = engine.limits.hold(
        job.alias, kind=kind, reason=str(exc)[:300], status=exc.status_code or "",
        model=model, holder=job.id if gate.probe else "",
    )  # fmt: skip
    logger.warning(
        "job %s key=%s: %s (%s refusal%s in this pause); the job waits, unbilled",
        job.id, job.alias, exc.code, refusals, "" if refusals == 1 else "s",
    )  # fmt: skip
    if new:
        probe = engine.settings.pause_probe_seconds
        raise_alert(engine, Alert(
            kind="model_paused" if model else "key_paused",
            alias=f"{job.alias}/{model}" if model else job.alias,
            provider=engine.settings.provider_for(job.alias), reason=str(exc)[:300],
            since=time.time(),
            fix=f"{_FIXES.get(kind, _FIXES['unauthorized'])}; the fleet tries one job every "
                f"{probe:g} s and resumes by itself, or run `relaydance keys resume "
                f"{job.alias}`",
        ))  # fmt: skip


def _aliases_on(engine: Engine, route: str) -> list[str]:
    aliases = set(engine.settings.keys()) | set(engine.limits.aliases_seen())
    return sorted(a for a in aliases if engine.limits.route(a) == route)


def resume_line(engine: Engine, alias: str, *, also: tuple[str, ...] = ()) -> list[str]:
    """A pause ended: fill the key's free slots from its line and nudge those jobs (and
    ``also``: jobs parked off the line). Returns the jobs nudged."""
    granted = engine.limits.grant_waiters(alias)
    advance_ids(engine, [*granted, *also])
    if granted or also:
        logger.info("key %s: line moving again (%d jobs nudged)", alias, len(granted) + len(also))
    return [*granted, *also]


def why_waiting(engine: Engine, alias: str, model: str = "") -> str | None:
    """Why a job of ``alias`` (and ``model``) waits behind a pause, in words, or None."""
    for hold in engine.limits.paused(alias):
        if hold.model is None or hold.model == model:
            scope = f"its use of {hold.model}" if hold.model else "the key"
            probe = (
                "no probes (an operator's pause)"
                if hold.probe_at is None
                else (f"next probe {_when(hold.probe_at)}")
            )
            return f"{scope} is paused since {_when(hold.since)}: {hold.reason} ({probe})"
    state = engine.limits.breakers.state(engine.limits.route(alias))
    if state is not None:
        return (
            f"the provider is down since {_when(state.since)}: {state.reason} "
            f"(next probe {_when(state.probe_at)})"
        )
    return None


def _when(at: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))
