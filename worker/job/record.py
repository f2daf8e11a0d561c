"""The job record: one Redis hash per job, the source of truth; Celery messages only nudge it.

:class:`Job` is a typed snapshot of the hash, parsed once where the record is read. The
states and the moves between them are declared in :mod:`worker.job.states`; the store
that reads and changes records with compare-and-sets is :mod:`worker.job.store`.

``billing`` follows what the provider may have charged (see
:class:`~worker.job.states.Billing`). Money is given back only for ``none`` and
``not_billed``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from worker.job.states import FINAL_STATES, Billing, JobKind, JobState

__all__ = [
    "FINAL_STATES",
    "JOB_ID",
    "PREFIX",
    "Billing",
    "Job",
    "JobKind",
    "JobState",
    "new_job_id",
]

PREFIX = "rd"
JOB_ID = re.compile(r"^rdj_[0-9a-f]{32}$")  # exactly what new_job_id makes


def new_job_id() -> str:
    """A fresh job id."""
    return "rdj_" + uuid.uuid4().hex


@dataclass(frozen=True)
class Job:
    """A snapshot of one job record."""

    id: str
    state: JobState
    alias: str
    request: dict[str, Any]
    kind: JobKind = JobKind.VIDEO  # a clip, or stills (an image job)
    seq: int = 0
    poll_count: int = 0
    remote_task_id: str | None = None
    remote_status: str | None = None
    next_due: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    output_path: str | None = None  # a local output's file; None in a bucket
    output_uri: str | None = None  # file:///... or s3://bucket/prefix/<job id>.mp4
    size: int | None = None
    sha256: str | None = None
    etag: str | None = None  # the object's ETag, in a bucket
    cost: float | None = None
    # What the provider says the task cost (Kinovi's creditsUsed), in USD, once it says.
    actual_cost: float | None = None
    on_done: str | None = None
    billing: Billing = Billing.NONE
    unknown_since: float | None = None
    orphans: int = 0
    submit_claim: int = 0
    download_claim: int = 0
    enqueue_pending: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    # Written by the steps under these same hash field names; read once, here.
    # The sources (local paths, still://<job>/<n>) its prepare uploaded; their urls are
    # kept apart (:meth:`~worker.job.url_keys.UrlKeys.uploads`). A record written before
    # holds them in ``media_urls`` (source -> url), still read.
    uploaded: list[str] = field(default_factory=list)
    media_urls: dict[str, str] = field(default_factory=dict)
    # When the urls it cites that the fleet made (its uploads, a storyboard's stills) stop
    # being sent (RELAYDANCE_INPUT_URL_TRUST_SECONDS): past it, prepare makes them again.
    inputs_until: float | None = None
    # Refused once (400) citing its stills' provider urls: sent again with them uploaded.
    inputs_resent: bool = False
    submit_attempts: int = 0
    submit_intent_at: float | None = None  # when the last POST was about to leave
    last_poll_at: float | None = None
    remote_final: bool = False  # a canceled job's task was seen final
    storage_refused_at: float | None = None  # the output's first refusal of the clip
    canceled_from: str | None = None
    adopted_from: str | None = None
    duplicate_spend: int = 0
    duplicate_remote_ids: list[str] = field(default_factory=list)
    # Earlier submissions that may have made a task (before a resubmit or a declared-
    # idempotent retry): claim number -> when its POST was about to leave.
    orphan_claims: dict[str, float] = field(default_factory=dict)
    batch: str | None = None  # "<batch id>:<line index>" for a batch's job
    # Where the clip goes under the output: None is "<job id>"; a batch's --output-name
    # template gives a path ("shoot/0001-a-paper-boat"), kept with the template it came from.
    output_name: str | None = None
    output_template: str | None = None
    retake_of: str | None = None  # the job this one takes again
    retakes: list[str] = field(default_factory=list)  # the jobs that took this one again
    webhook_at: float | None = None  # when a verified webhook last arrived
    notified_final: bool = False  # the fleet has learned how the job ended
    on_done_status: str | None = None  # sent, retrying or unregistered
    on_done_error: str | None = None
    on_done_attempts: int = 0
    on_done_sent_at: float | None = None
    # An image job's: how many images its POST's reply named (their urls are signed, kept
    # apart by the store: :meth:`~worker.job.store.JobStore.image_urls`), and each stored
    # image (uri, path, sha256, size, width, height), in order. ``output_*``, ``size`` and
    # ``sha256`` are the first's.
    image_count: int = 0
    outputs: list[dict[str, Any]] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # fields no step reads as typed

    @property
    def is_final(self) -> bool:
        """Whether the job has reached done, failed or canceled."""
        return self.state in FINAL_STATES

    def claim_sent_at(self, claim: int) -> float | None:
        """When the POST of submission ``claim`` left, if that submission may have made a
        task the job has not recorded (its reply lost): else None."""
        if claim == self.submit_claim and not self.remote_task_id and self.submit_intent_at:
            if self.billing in (Billing.PENDING, Billing.UNKNOWN):
                return self.submit_intent_at
        return self.orphan_claims.get(str(claim))

    @property
    def model(self) -> str:
        """The model the job asks for."""
        return str(self.request.get("model", ""))

    @property
    def possibly_billed(self) -> int:
        """Provider tasks this job may have paid for without knowing (0 when none)."""
        current = 1 if self.billing in (Billing.PENDING, Billing.UNKNOWN) else 0
        return self.orphans + current

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view: what the CLI prints and the ``on_done`` callback receives."""
        return {
            "job_id": self.id,
            "state": self.state.value,
            "key": self.alias,
            "kind": self.kind.value,
            "model": self.request.get("model"),
            "seconds": self.request.get("seconds"),
            "remote_task_id": self.remote_task_id,
            "polls": self.poll_count,
            "output_path": self.output_path,
            "output_uri": self.output_uri,
            "size": self.size,
            "sha256": self.sha256,
            "etag": self.etag,
            "outputs": [dict(output) for output in self.outputs],
            "estimated_cost": self.cost,
            "actual_cost": self.actual_cost,
            "billing": self.billing.value,
            "possibly_billed": self.possibly_billed,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "times": self.times,
            "duplicate_spend": self.duplicate_spend,
            "duplicate_remote_ids": list(self.duplicate_remote_ids),
        }

    @classmethod
    def from_hash(cls, job_id: str, data: Mapping[str, str]) -> Job:
        """Build a snapshot from the raw Redis hash; unknown fields land in ``extra``."""
        kwargs: dict[str, Any] = {"times": {}, "extra": {}}
        for key, value in data.items():
            if key.startswith("t_"):
                kwargs["times"][key[2:]] = float(value)
            elif key in _PARSE:
                if value != "" or key in _TEXT_FIELDS:
                    kwargs[key] = _PARSE[key](value)
            else:
                kwargs["extra"][key] = value
        return cls(id=job_id, **kwargs)


def _flag(value: str) -> bool:
    return value == "1"


def _text_or_none(value: str) -> str | None:
    return value or None


def _comma_list(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


# How each field of the hash is read, by its type on :class:`Job` (an empty value keeps
# the default, except for text); the few whose text is not their type's are named.
_BY_TYPE: dict[str, Callable[[str], Any]] = {
    "str": str, "str | None": _text_or_none, "int": int, "float": float,
    "float | None": float, "int | None": int, "bool": _flag, "dict[str, Any]": json.loads,
    "dict[str, str]": json.loads, "dict[str, float]": json.loads, "list[str]": json.loads,
    "list[dict[str, Any]]": json.loads,
}  # fmt: skip
_NAMED: dict[str, Callable[[str], Any]] = {
    "state": JobState,
    "kind": lambda value: JobKind(value) if value else JobKind.VIDEO,
    "billing": lambda value: Billing(value) if value else Billing.NONE,
    "retakes": _comma_list,
}
_UNTYPED = ("id", "times", "extra")  # not hash fields: the key, ``t_*`` fields, the rest
_PARSE: dict[str, Callable[[str], Any]] = {
    f.name: _NAMED.get(f.name) or _BY_TYPE[str(f.type)]
    for f in fields(Job)
    if f.name not in _UNTYPED
}
_TEXT_FIELDS = frozenset(name for name, parse in _PARSE.items() if parse in (str, _text_or_none))
