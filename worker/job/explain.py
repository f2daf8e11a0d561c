"""Why a job waits, and until when: one row per job state, read by every status view.

``relaydance status``, its ``--json`` and the examples' status pages all show
:func:`explain`'s answer, so a job never sits "working on it" with no sign of why. Each row
of :data:`ROWS` turns a job (and a few facts looked up once: its place in line, whether
webhooks are on, the receiver's last self-check) into an :class:`Explanation`: what the job
waits for, a sentence for people, and when the fleet next looks at it.

Rows are keyed by the state's text; rows read optional fields defensively and never
assume one is there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.infra.timefmt import at, iso, span
from worker.job.calls import why_waiting
from worker.job.engine import Engine
from worker.job.reachability import ReceiverCheck, last_check, missed_count
from worker.job.record import Job, JobKind

__all__ = ["ROWS", "Explanation", "Facts", "explain", "facts_for"]


@dataclass(frozen=True)
class Facts:
    """What the rows need besides the job record, looked up once."""

    now: float
    webhooks: bool = False
    safety_poll_seconds: float = 600.0
    position: int | None = None
    in_use: int | None = None
    limit: int | None = None
    expected_seconds: float | None = None
    receiver: ReceiverCheck | None = None
    missed_webhooks: int = 0
    paused: str | None = None  # why the job's key, model or provider is paused, if it is


@dataclass(frozen=True)
class Explanation:
    """What a job waits for, in words, and when the fleet next looks at it."""

    state: str
    waiting_for: str | None  # worker, slot, provider, webhook, poll, download, operator
    text: str
    until: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def as_json(self, *, now: float) -> dict[str, Any]:
        """JSON-ready: times as epoch seconds and ISO 8601."""
        return {
            "state": self.state,
            "waiting_for": self.waiting_for,
            "text": self.text,
            "until": self.until,
            "until_iso": iso(self.until),
            "next_check_in_seconds": (
                None if self.until is None else round(max(self.until - now, 0.0), 1)
            ),
            "details": self.details,
            "notes": list(self.notes),
        }


Row = Callable[[Job, Facts], Explanation]


def _due(job: Job) -> float | None:
    return job.next_due


def _check(until: float | None, facts: Facts) -> str:
    """``12:03:10 UTC (next check in 4 m 10 s)``, or how overdue it is."""
    if until is None:
        return "when a worker next takes it"
    if until >= facts.now:
        return at(until, now=facts.now).replace("(in ", "(next check in ", 1)
    return f"{at(until, now=facts.now)[:-1]}; the sweeper resumes overdue jobs)"


def _last_poll(job: Job, facts: Facts) -> tuple[str, dict[str, Any]]:
    polled_at = job.last_poll_at
    status = job.remote_status or "unknown"
    if job.poll_count == 0 or polled_at is None:
        return "not polled yet", {"remote_status": job.remote_status, "polls": job.poll_count}
    text = (
        f"the provider said {status!r} at the last poll, {at(polled_at, now=facts.now)}; "
        f"{job.poll_count} poll{'s' if job.poll_count != 1 else ''}"
    )
    details = {
        "remote_status": job.remote_status,
        "polls": job.poll_count,
        "last_poll_at": polled_at,
        "last_poll_iso": iso(polled_at),
    }
    return text, details


def _queued(job: Job, facts: Facts) -> Explanation:
    until = _due(job)
    return Explanation(
        "queued", "worker",
        f"queued: waiting for a worker to take its first step; resumed by the sweeper at "
        f"{_check(until, facts)} if none does",
        until,
    )  # fmt: skip


def _waiting_for_input(job: Job, facts: Facts) -> Explanation:
    stills = job.extra.get("waits_for", "").replace(",", ", ") or "its stills"
    return Explanation(
        "waiting_for_input", "input",
        f"waiting for {stills} to be done: their images come first in its images; it holds "
        f"no slot, and ends canceled, unbilled, if one fails; checked again at "
        f"{_check(_due(job), facts)}", _due(job),
    )  # fmt: skip


def _waiting_for_slot(job: Job, facts: Facts) -> Explanation:
    until = _due(job)
    where = f"number {facts.position} in line" if facts.position is not None else "next in line"
    use = (
        f", {facts.in_use} of {facts.limit} slots in use"
        if facts.in_use is not None and facts.limit is not None
        else ""
    )
    return Explanation(
        "waiting_for_slot", "slot",
        f"waiting for a slot of key {job.alias!r}: {where}{use}; a freed slot is handed "
        f"over at once, and the line is rechecked at {_check(until, facts)}",
        until,
        {"position": facts.position, "in_use": facts.in_use, "limit": facts.limit},
    )  # fmt: skip


def _submitting(job: Job, facts: Facts) -> Explanation:
    until = _due(job)
    sent = job.submit_intent_at
    since = f" since {at(sent, now=facts.now)}" if sent is not None else ""
    return Explanation(
        "submitting", "provider",
        f"submitting to the provider{since}; if the worker died, the sweeper resumes it at "
        f"{_check(until, facts)}",
        until,
        {"submit_intent_at": sent, "submit_intent_iso": iso(sent)},
    )  # fmt: skip


def _submit_unknown(job: Job, facts: Facts) -> Explanation:
    hold_until = _due(job)  # the slot hold's end; none once it has passed
    since = job.unknown_since
    lead = "the submission may have reached the provider, but no reply came back"
    if since is not None:
        lead += f" ({at(since, now=facts.now)})"
    if job.error_message:
        lead += f"; evidence: {job.error_message}"
    if hold_until is not None:
        slot = f"; its slot is kept until {at(hold_until, now=facts.now)} in case it generates"
    else:
        slot = "; its slot has been given back"
    if facts.webhooks and job.kind is JobKind.VIDEO:  # an image POST has no task to call back
        text = f"{lead}{slot}. Waiting for that task's webhook, which the job adopts"
        waiting = "webhook"
    else:
        text = (
            f"{lead}{slot}. Nothing is resubmitted blindly: check the provider's dashboard, "
            f"then `relaydance resubmit {job.id}` (may pay twice) or `relaydance cancel {job.id}`"
        )
        waiting = "operator"
    details = {"unknown_since": since, "hold_until": hold_until, "billing": job.billing.value}
    return Explanation("submit_unknown", waiting, text, hold_until, details)


def _remote(state: str) -> Row:
    def row(job: Job, facts: Facts) -> Explanation:
        until = _due(job)
        polled, details = _last_poll(job, facts)
        if facts.webhooks:
            text = (
                f"waiting for webhook, safety poll at {_check(until, facts)}; {polled}"
                f"{_overdue(job, facts)}"
            )
            return Explanation(state, "webhook", text, until, details)
        if job.poll_count == 0:
            expected = (
                f", near the expected generation time ({span(facts.expected_seconds)})"
                if facts.expected_seconds
                else ""
            )
            text = f"submitted; first poll at {_check(until, facts)}{expected}"
        else:
            text = f"generating; next poll at {_check(until, facts)}; {polled}"
        return Explanation(state, "poll", text, until, details)

    return row


def _overdue(job: Job, facts: Facts) -> str:
    submitted = job.times.get("submitted")
    if submitted is None or not facts.expected_seconds:
        return ""
    waited = facts.now - submitted
    if waited <= 2 * facts.expected_seconds:
        return ""
    return (
        f"; submitted {span(waited)} ago, while generations of this model take about "
        f"{span(facts.expected_seconds)}: its webhook may not be getting through"
    )


def _generated(job: Job, facts: Facts) -> Explanation:
    until = _due(job)
    return Explanation(
        "generated", "download",
        f"generated; the download comes next (resumed at {_check(until, facts)} if no "
        "worker takes it)",
        until,
    )  # fmt: skip


def _downloading(job: Job, facts: Facts) -> Explanation:
    until = _due(job)
    what = "stills" if job.kind is JobKind.IMAGE else "clip"
    return Explanation(
        "downloading", "download",
        f"downloading the {what}; a stalled download is resumed at {_check(until, facts)}",
        until,
    )  # fmt: skip


def _done(job: Job, facts: Facts) -> Explanation:
    return Explanation("done", None, f"done: {job.output_path or 'no output path recorded'}")


def _failed(job: Job, facts: Facts) -> Explanation:
    return Explanation(
        "failed", None, f"failed: {job.error_code or 'unknown'}: {job.error_message or ''}"
    )


def _canceled(job: Job, facts: Facts) -> Explanation:
    return Explanation("canceled", None, "canceled; nothing more will happen to it")


ROWS: dict[str, Row] = {
    "waiting_for_input": _waiting_for_input,
    "queued": _queued,
    "waiting_for_slot": _waiting_for_slot,
    "submitting": _submitting,
    "submit_unknown": _submit_unknown,
    "submitted": _remote("submitted"),
    "running": _remote("running"),
    "generated": _generated,
    "downloading": _downloading,
    "done": _done,
    "failed": _failed,
    "canceled": _canceled,
}


def _unknown_state(job: Job, facts: Facts) -> Explanation:
    state = str(job.state)
    until = _due(job)
    return Explanation(state, None, f"{state}; next step due at {_check(until, facts)}", until)


def _notes(job: Job, facts: Facts) -> tuple[str, ...]:
    notes: list[str] = []
    if facts.webhooks and job.kind is JobKind.VIDEO and not job.is_final and job.state != "queued":
        receiver = facts.receiver
        if receiver is not None and not receiver.ok:
            checked = at(receiver.checked_at, now=facts.now)
            notes.append(
                f"the webhook receiver failed its self-check {checked}: "
                f"GET {receiver.url} {receiver.detail}"
            )
        if facts.missed_webhooks:
            notes.append(f"{facts.missed_webhooks} job(s) so far ended without their webhook")
    status = job.on_done_status
    if job.on_done and status:
        error = job.on_done_error
        notes.append(f"on_done {job.on_done!r}: {status}" + (f": {error}" if error else ""))
    return tuple(notes)


def facts_for(engine: Engine, job: Job, *, now: float | None = None) -> Facts:
    """Look up what the rows need for ``job``: its place in line, webhooks, limits."""
    settings = engine.settings
    state = str(job.state)
    position = in_use = limit = None
    if state == "waiting_for_slot":
        position = engine.limits.position(job.alias, job.id)
        in_use = engine.limits.in_use(job.alias)
        limit = engine.limits.effective_limit(job.alias)
    expected = None
    if state in ("submitted", "running"):
        model, seconds = job.request.get("model"), job.request.get("seconds")
        if model is not None and seconds is not None:
            expected = engine.timing.expected(str(model), int(seconds))
    webhooks = bool(settings.webhook_base_url)
    paused = None if job.is_final else why_waiting(engine, job.alias, job.model)
    return Facts(
        now=time.time() if now is None else now,
        webhooks=webhooks,
        safety_poll_seconds=settings.webhook_safety_poll_seconds,
        position=position,
        in_use=in_use,
        limit=limit,
        expected_seconds=expected,
        receiver=last_check(engine.redis) if webhooks else None,
        missed_webhooks=missed_count(engine.redis) if webhooks else 0,
        paused=paused,
    )


def explain(job: Job, facts: Facts) -> Explanation:
    """What the job waits for and until when, by the row of its state."""
    row = ROWS.get(str(job.state), _unknown_state)
    found = row(job, facts)
    notes = _notes(job, facts)
    if facts.paused and not job.is_final:
        # The pause comes first: it is why nothing moves, and it ends by itself.
        waiting = "pause" if str(job.state) in _HELD_BACK else found.waiting_for
        text = f"paused: {facts.paused}; {found.text}"
        details = {**found.details, "paused": facts.paused}
        return Explanation(found.state, waiting, text, found.until, details, notes)
    if not notes:
        return found
    return Explanation(
        found.state, found.waiting_for, found.text, found.until, found.details, notes
    )


# States in which a pause holds the job back from its next step (a submission).
_HELD_BACK = frozenset({"queued", "waiting_for_slot", "submitting"})
