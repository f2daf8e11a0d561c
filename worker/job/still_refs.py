"""A storyboard clip's stills, named in its request and made urls only in its POST's body.

The urls of a still's images are signed, so neither the still's record nor the clip's
stored request holds them: :func:`worker.job.inputs.refs` names each image
(``still://<job id>/<n>``, first in the clip's ``images``), and :func:`resolved` puts the
url the store kept for it (:meth:`~worker.job.store.JobStore.image_urls`) in its place
only when the submit step builds the body; where that url was past its trust, the
prepare step uploaded the stored still (:mod:`worker.job.prepare`) and the clip's
uploads (:meth:`~worker.job.url_keys.UrlKeys.uploads`) hold the upload's url, sent
instead. A url that is gone (expired with its key) is never replaced by anything else:
the clip is canceled with the reason, never sent, so never billed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from worker.errors import BadRequest, PermanentError
from worker.job.advance import advance
from worker.job.engine import Engine
from worker.job.inputs import REF
from worker.job.notify import notify_final
from worker.job.record import Billing, Job
from worker.job.step import Outcome, release, stop
from worker.job.transitions import CANCEL, REQUEUE
from worker.render.request import RenderRequest

__all__ = ["cancel_unsent", "resent", "resolved"]

logger = logging.getLogger(__name__)


def resolved(
    engine: Engine, job: Job, claim: int, *, uploads: Mapping[str, str]
) -> RenderRequest | Outcome:
    """The clip's request with each still's url in place of its name (its upload's, from
    ``uploads``, where prepare uploaded it); when one is gone, the clip (claimed by
    ``claim``, not sent) is canceled unbilled: an Outcome."""
    request = RenderRequest.model_validate(job.request)
    stills = [source for source in request.images if source.startswith(REF)]
    if not stills:
        return request
    # Those past their trust were uploaded again by prepare: the upload's url is sent.
    found = {source: uploads[source] for source in stills if source in uploads}
    named = [source for source in stills if source not in found]
    ids = sorted({source[len(REF) :].partition("/")[0] for source in named})
    kept = dict(zip(ids, engine.store.image_urls(ids), strict=True)) if ids else {}
    for source in named:
        still, _, n = source[len(REF) :].partition("/")
        urls = kept[still] or []
        if not (n.isdigit() and 0 < int(n) <= len(urls)):
            return cancel_unsent(engine, job, f"the url of its still {still} is gone (expired)",
                                 where={"submit_claim": claim})  # fmt: skip
        found[source] = urls[int(n) - 1]
    return request.model_copy(update={"images": tuple(found.get(s, s) for s in request.images)})


def cancel_unsent(
    engine: Engine, job: Job, why: str, *, where: dict[str, object] | None = None
) -> Outcome:
    """Cancel the clip, never sent (so never billed), because ``why`` (its still's url
    cannot be sent); ``where`` conditions the move (the submit's claim)."""
    reason = f"{why}; the clip was never sent"
    applied, _ = engine.store.apply(
        job.id, CANCEL, where=where,
        set={"error_code": "input_expired", "error_message": reason,
             "billing": Billing.NONE.value},
    )  # fmt: skip
    if applied:
        logger.warning("job %s canceled: %s", job.id, reason,
                       extra={"job_id": job.id, "state": "canceled"})  # fmt: skip
        release(engine, job)
        notify_final(engine, job.id)
    return stop(f"canceled: {reason}")


def resent(engine: Engine, job: Job, claim: int, exc: PermanentError) -> Outcome | None:
    """The provider refused the clip's POST of ``claim`` with a 400 (nothing created) while
    it cited a still by the provider's own url: that url may not be fetchable any more,
    though still trusted. The first time, the clip goes back to the head of its line, its
    stills' trust spent, so prepare uploads them and it is sent once more, unbilled so far;
    None where that does not apply (the refusal then fails the clip)."""
    cited = [s for s in job.request.get("images", ()) if s.startswith(REF)]
    if not isinstance(exc, BadRequest) or job.inputs_resent or set(cited) <= set(job.uploaded):
        return None
    applied, _ = engine.store.apply(
        job.id, REQUEUE, where={"submit_claim": claim},
        set={"inputs_until": 0.0, "inputs_resent": 1},
        due=time.time() + engine.settings.step_grace_seconds,
    )  # fmt: skip
    if not applied:
        return stop("the job moved on")
    logger.warning("job %s: refused citing its stills' urls (%s); uploading them to send it "
                   "once more", job.id, str(exc)[:200], extra={"job_id": job.id})  # fmt: skip
    advance(engine, engine.store.get(job.id))  # prepare, then submit: it keeps its slot
    return stop("refused citing its stills' urls: sent again, uploaded")
