"""The jobs page: jobs, batches, keys and spend as a studio watches them, in a browser.

::

    http.py      the page's own request and response (adapters translate to them)
    auth.py      credentials, CSRF tokens, the loopback opening (an explicit opt-in)
    sessions.py  revocable sessions and the failed sign-in throttle, in Redis
    signin.py    who is let in: the sign-in form, sign-out, 401/403/429 answers
    detail.py    one job: timeline, request without secrets, money, manifest, clip
    media.py     the clip (or still) file, found safely, answered in byte ranges
    batches.py   batch progress by state, spend against budget, throughput, ETA
    sheet.py     a batch's contact sheet: its clips and stills in a grid, line by line
    keys.py      per-alias limits, use, request rate, 429s per minute, learned timings
    actions.py   cancel and resubmit through the producer API
    pages.py     the read-only pages; app.py routing, sign-in and the actions
    render.py    templates/ and static/ (package data; nothing fetched from elsewhere)
    asgi.py      the Starlette app ``relaydance web`` mounts; Flask and Django adapters
                 live in :mod:`worker.web.integrations`

Server-rendered HTML; a small script refreshes the live part of each page every few
seconds and the pages work without it. The list of jobs is :mod:`worker.job.listing`,
which ``relaydance jobs`` pages through too.
"""

from __future__ import annotations

from worker.web.jobs_page.app import JobsPage
from worker.web.jobs_page.asgi import asgi_app
from worker.web.jobs_page.auth import Credentials, is_loopback_host
from worker.web.jobs_page.http import UiRequest, UiResponse

__all__ = ["Credentials", "JobsPage", "UiRequest", "UiResponse", "asgi_app", "is_loopback_host"]
