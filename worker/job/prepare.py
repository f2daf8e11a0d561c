"""The prepare step: the urls a clip's request cites that the fleet makes, made before its
POST.

Two kinds of source need one (:func:`worker.job.advance.needs_prepare` says when):

- a local file (``images``, ``videos``, ``audio``, a frame), uploaded through
  ``POST /files``, checked again by this worker's allow-list on the handle it uploads;
- a storyboard's still (``still://<job>/<n>``) whose provider url is past its trust
  (``RELAYDANCE_INPUT_URL_TRUST_SECONDS`` after the still's reply; no provider documents
  how long its urls live): the stored file is read back from the output, checked against
  the sha256 its record holds, and uploaded, so the clip never cites a url that may have
  expired. A still whose url is still trusted is sent as it is (:mod:`worker.job.still_refs`).

What is made is kept as it comes (a retried step goes on where it stopped): its url apart
from the record (:meth:`~worker.job.url_keys.UrlKeys.keep_upload`: the provider's upload
urls may be signed), the source in the record's ``uploaded``, with ``inputs_until``: the
earliest moment one of the urls the clip will send stops being trusted. A clip that
waits in line past it comes back here before its POST (:func:`worker.job.submit.submit`),
and every url is made again.

Nothing here is billed: an upload makes no task, so every failure is retried or ends the
clip unbilled. A still that cannot be uploaded (its stored file gone or changed, or a
provider with no upload endpoint: Kinovi) cancels the clip, never sent.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from pydantic import SecretStr

from config.settings import SettingsError
from worker.errors import (
    AccountFault,
    Deferred,
    PermanentError,
    StorageError,
    TransientError,
)
from worker.job import calls
from worker.job.engine import Engine
from worker.job.record import Job
from worker.job.states import IN_LINE
from worker.job.step import (
    Outcome,
    again,
    api_key,
    fail,
    load,
    log_transition,
    moved_on,
    transient,
)
from worker.job.still_refs import cancel_unsent
from worker.provider.client import ApiClient
from worker.render.local_media import MediaFileRefused, allowed_dirs, expected_kind, open_media
from worker.render.request import FIELD_OF_KIND, STILL_REF, RenderRequest, is_url

__all__ = ["prepare"]


class StillUnavailable(Exception):
    """A still's stored file cannot be sent again: the clip is canceled, never sent."""


def prepare(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Make every url the clip's request needs and the fleet must make (see the module)."""
    job = load(engine, job_id, seq, "prepare")
    if isinstance(job, Outcome):
        return job
    try:
        api_key(engine, job)
    except SettingsError as exc:
        return fail(engine, job, "unknown_key", str(exc))
    now = time.time()
    recorded = (job.uploaded, job.inputs_until)  # as the record holds them
    stale = job.inputs_until is not None and now >= job.inputs_until
    if stale:
        job = _forget(job)  # past its trust: every url is made again
    request = RenderRequest.model_validate(job.request)
    stills = _still_times(engine, request, _made(job))
    if stale:  # the stills' provider urls too, whatever their own age
        stills = dict.fromkeys(stills, 0.0)
    trust = engine.settings.input_url_trust_seconds
    # Stills sent by their provider's url (still trusted) bound the clip's trust.
    until = _earliest(job.inputs_until, *(t for t in stills.values() if t > now))
    for kind, source in request.media():
        if source in _made(job) or (is_url(source) and not _to_upload(source, stills, now)):
            continue
        made = _make(engine, job, kind, source, attempt)
        if isinstance(made, Outcome):
            return made
        until = _earliest(until, time.time() + trust)
        # Past its trust, the clip stays so until every url is made again (a retry then
        # starts over); else each url kept renews it at once.
        job = _keep(engine, job, seq, source, made, renew=None if stale else until)
        recorded = (job.uploaded, recorded[1] if stale else until)
        log_transition(job, "uploaded", file=_shown(source))
    if (job.uploaded, until) != recorded:  # else the last url kept wrote them
        engine.store.update_fields(
            job_id, states=IN_LINE, where={"seq": seq},
            set={"uploaded": json.dumps(job.uploaded), "inputs_until": until or ""},
        )  # fmt: skip
    return moved_on(job, job.state, inputs_until=until)


def _to_upload(source: str, stills: dict[str, float], now: float) -> bool:
    """Whether ``source`` names a still whose provider url is no longer trusted."""
    when = stills.get(source.rpartition("/")[0])
    return when is not None and when <= now


def _still_times(engine: Engine, request: RenderRequest, made: set[str]) -> dict[str, float]:
    """For each still the request names (``still://<id>``) and no url was made for: when
    its provider url stops being trusted (0 when its record is gone: trusted no more)."""
    named = [s for _, s in request.media() if STILL_REF.fullmatch(s) and s not in made]
    ids = sorted({s.rpartition("/")[0] for s in named})
    if not ids:
        return {}
    trust = engine.settings.input_url_trust_seconds
    records = engine.store.get_many([i.removeprefix("still://") for i in ids])
    return {
        still: (record.times.get("generated", record.updated_at) + trust) if record else 0.0
        for still, record in zip(ids, records, strict=True)
    }


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t]
    return min(known) if known else None


def _forget(job: Job) -> Job:
    """Drop the urls made before: they are past their trust. Nothing is written: the record
    stays past its trust until the first url made again is kept."""
    log_transition(job, "inputs_expired", urls=len(_made(job)))
    return replace(job, uploaded=[], media_urls={}, inputs_until=None)


def _made(job: Job) -> set[str]:
    """The sources whose url an upload made (a record written before: ``media_urls``)."""
    return {*job.uploaded, *job.media_urls}


def _keep(engine: Engine, job: Job, seq: int, source: str, url: str, *, renew: float | None) -> Job:
    """Keep the url an upload of ``source`` answered; with ``renew``, the clip's new trust."""
    engine.store.keep_upload(job.id, source, url)  # first: the record then names it
    uploaded = [*job.uploaded, source]
    fields: dict[str, object] = {"uploaded": json.dumps(uploaded)}
    if renew is not None:
        fields["inputs_until"] = renew
    engine.store.update_fields(job.id, states=IN_LINE, where={"seq": seq}, set=fields)
    return replace(job, uploaded=uploaded)


def _make(engine: Engine, job: Job, kind: str, source: str, attempt: int) -> str | Outcome:
    """Upload ``source`` (a local file, or a still's stored file); its url, or the
    Outcome of what went wrong."""
    try:
        gate = calls.admit(engine, job)
        if STILL_REF.fullmatch(source):
            sender = _still_sender(engine, source)
        else:  # checked again here, by this worker's allow-list, on the handle it uploads
            handle, mime = open_media(source, expected_kind(kind), allowed_dirs(engine.settings))
            sender = _upload(Path(source).name, handle, mime)
        return calls.perform(engine, job, gate, sender)
    except Deferred as exc:
        return again(min(exc.seconds, engine.settings.poll_interval_max), attempt=attempt)
    except MediaFileRefused as exc:
        return fail(engine, job, "file_refused", f"{FIELD_OF_KIND.get(kind, kind)}: {exc}")
    except StillUnavailable as exc:
        return cancel_unsent(engine, job, str(exc), where={"seq": job.seq})
    except AccountFault:
        return again(engine.settings.pause_probe_seconds, attempt=attempt)
    except TransientError as exc:
        return transient(engine, job, exc, attempt)
    except PermanentError as exc:
        if STILL_REF.fullmatch(source) and exc.code == "uploads_unsupported":
            why = f"{_still_stale(source)}, and {exc}"
            return cancel_unsent(engine, job, why, where={"seq": job.seq})
        return fail(engine, job, exc.code, f"upload of {_shown(source)}: {exc}")
    except OSError as exc:
        return fail(engine, job, "file_unreadable", f"{source}: {exc.strerror}")


def _still_sender(engine: Engine, source: str) -> Callable[[ApiClient, SecretStr], str]:
    """The upload of the stored file of the still image ``source``, read and checked now."""
    still_id, _, n = source.removeprefix("still://").partition("/")
    still = engine.store.get(still_id)
    outputs = still.outputs if still else []
    if not 0 < int(n) <= len(outputs):
        raise StillUnavailable(f"{_still_stale(source)}, and its stored file is not on record")
    stored = outputs[int(n) - 1]
    uri = str(stored.get("uri", ""))
    try:
        data = engine.storage.read(uri, max_bytes=engine.settings.download_max_bytes)
    except StorageError as exc:
        raise StillUnavailable(f"{_still_stale(source)}, and its stored file: {exc}") from None
    if hashlib.sha256(data).hexdigest() != stored.get("sha256"):
        raise StillUnavailable(
            f"{_still_stale(source)}, and its stored file {uri} is not the one stored "
            "(its sha256 differs)"
        )
    name = f"{still_id}-{n}{Path(uri).suffix}"
    return _upload(name, io.BytesIO(data), str(stored.get("content_type") or "") or None)


def _still_stale(source: str) -> str:
    return f"the url of its still {_shown(source)} is past RELAYDANCE_INPUT_URL_TRUST_SECONDS"


def _shown(source: str) -> str:
    return source.removeprefix("still://") if STILL_REF.fullmatch(source) else Path(source).name


def _upload(name: str, handle: BinaryIO, mime: str | None) -> Callable[[ApiClient, SecretStr], str]:
    return lambda client, key: client.upload(
        Path(name), api_key=key, content_type=mime, handle=handle
    )
