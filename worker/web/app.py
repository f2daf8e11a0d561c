"""The ``web`` process: a small Starlette app that receives webhooks, served by uvicorn.

Routes: ``POST /hooks/{job_id}/{token}`` (see :func:`worker.web.receiver.handle_webhook`),
``GET /healthz`` and ``GET /hooks/healthz`` (the same check under the webhook prefix, which
workers reach through ``RELAYDANCE_WEBHOOK_BASE_URL`` at start), and ``GET /metrics`` only
to a request bearing ``RELAYDANCE_METRICS_TOKEN`` (404 otherwise: the receiver is public).
:func:`serve` also starts the loopback metrics listener
(:func:`worker.web.metrics.start_metrics_listener`), where Prometheus scrapes. The handler is
synchronous (one Redis read, one broker publish), so it runs in the thread pool and the
event loop stays free. The access log is off: request
paths carry callback tokens, which must not reach a log. The jobs page
(:mod:`worker.web.jobs_page`) is mounted under ``RELAYDANCE_UI_PREFIX`` (``/ui``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from config.settings import get_settings
from worker.job.engine import Engine, get_engine
from worker.web.bodies import MalformedLength, read_limited
from worker.web.jobs_page import Credentials, JobsPage, asgi_app, is_loopback_host
from worker.web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from worker.web.metrics import bearer_allows, render_metrics, start_metrics_listener
from worker.web.receiver import MAX_BODY_BYTES, handle_webhook, receiver_health

__all__ = ["create_web_app", "default_prefix", "serve", "web_options_problem"]

logger = logging.getLogger(__name__)


def default_prefix() -> str:
    """The path of ``RELAYDANCE_WEBHOOK_BASE_URL``, or ``/hooks`` when it is unset."""
    base = get_settings().webhook_base_url
    return (urlsplit(base).path if base else "") or "/hooks"


def create_web_app(
    *, engine: Callable[[], Engine] = get_engine, prefix: str | None = None,
    open_ui_on_loopback: bool = False,
) -> Starlette:  # fmt: skip
    """The webhook receiver as an ASGI app, routes under ``prefix`` (default: see
    :func:`default_prefix`; pass it when a proxy in front rewrites paths), and the jobs
    page, which opens without credentials only with ``open_ui_on_loopback`` (an explicit
    opt-in; :func:`serve` allows it only on a loopback bind), to loopback requests that
    came through no proxy."""

    async def webhook(request: Request) -> JSONResponse:
        try:
            body = await read_limited(request, limit=MAX_BODY_BYTES)
        except MalformedLength as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        status, payload = await run_in_threadpool(
            _handle,
            engine,
            str(request.path_params["job_id"]),
            str(request.path_params["token"]),
            body,
            request.headers.get("content-type", ""),
            request.query_params.get("c"),
        )
        return JSONResponse(payload, status_code=status)

    async def healthz(request: Request) -> JSONResponse:
        status, payload = await run_in_threadpool(lambda: receiver_health(engine=engine()))
        return JSONResponse(payload, status_code=status)

    async def metrics(request: Request) -> Response:
        # Key aliases, job counts and spend: only for the holder of the metrics token.
        if not bearer_allows(engine().settings, request.headers.get("authorization", "")):
            return JSONResponse({"ok": False, "error": "not found"}, status_code=404)
        text = await run_in_threadpool(lambda: render_metrics(engine()))
        return Response(text, media_type=METRICS_CONTENT_TYPE)

    prefix = _normal_prefix(prefix if prefix is not None else default_prefix())
    ui_root = "/" + get_settings().ui_prefix.strip("/")
    credentials = Credentials.from_settings(get_settings(), open_on_loopback=open_ui_on_loopback)
    page = JobsPage(credentials, engine=engine)
    return Starlette(
        routes=[
            *([Mount(ui_root, app=asgi_app(page, root=ui_root))] if ui_root != "/" else []),
            Route(prefix + "/{job_id}/{token}", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            *([Route(prefix + "/healthz", healthz, methods=["GET"])] if prefix else []),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


def _normal_prefix(prefix: str) -> str:
    """``prefix`` with one leading slash and none trailing; empty for the root."""
    return "/" + prefix.strip("/") if prefix.strip("/") else ""


def _handle(
    engine: Callable[[], Engine],
    job_id: str,
    token: str,
    body: bytes,
    content_type: str,
    claim: str | None,
) -> tuple[int, dict[str, object]]:
    return handle_webhook(job_id, token, body, content_type, claim=claim, engine=engine())


def _log_ui(host: str, port: int, *, open_ui_on_loopback: bool) -> None:
    settings = get_settings()
    if not settings.ui_prefix.strip("/"):
        return
    creds = Credentials.from_settings(settings, open_on_loopback=open_ui_on_loopback)
    if creds.open_on_loopback:
        logger.warning(
            "the jobs page is OPEN WITHOUT CREDENTIALS to loopback clients "
            "(--open-ui-on-loopback): anything that forwards a port to %s:%d (socat, ssh -R, "
            "a proxy in TCP mode) opens it to others; set RELAYDANCE_UI_TOKEN instead",
            host,
            port,
        )
    elif not creds.configured:
        logger.warning(
            "the jobs page refuses every request: set RELAYDANCE_UI_TOKEN (or "
            "RELAYDANCE_UI_USER and RELAYDANCE_UI_PASSWORD)"
        )
    logger.info("jobs page on http://%s:%d/%s/", host, port, settings.ui_prefix.strip("/"))


def web_options_problem(host: str, *, workers: int, open_ui_on_loopback: bool) -> str | None:
    """Why ``relaydance web`` cannot serve with these options; None when it can."""
    if open_ui_on_loopback and not is_loopback_host(host):
        return (
            f"--open-ui-on-loopback needs a loopback --host (127.0.0.1 or ::1), not {host}; "
            "set RELAYDANCE_UI_TOKEN to serve the jobs page elsewhere"
        )
    if open_ui_on_loopback and workers > 1:
        return "--open-ui-on-loopback serves one process: drop --workers"
    return None


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    prefix: str | None = None,
    log_level: str = "info",
    open_ui_on_loopback: bool = False,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve the webhook receiver with uvicorn until interrupted (``relaydance web``).

    One process accepts several hundred webhooks a second (each is a broker publish;
    see bench/bench_webhooks.py); ``workers`` runs several processes on the same port.
    ``forwarded_allow_ips`` (default ``RELAYDANCE_TRUSTED_PROXIES``) names the proxies
    whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed.
    """
    import uvicorn

    problem = web_options_problem(host, workers=workers, open_ui_on_loopback=open_ui_on_loopback)
    if problem:
        raise ValueError(problem)
    settings = get_settings()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,  # paths hold callback tokens
        "proxy_headers": True,
        "forwarded_allow_ips": forwarded_allow_ips or settings.trusted_proxies,
    }
    if settings.webhook_secret is None:
        logger.warning("RELAYDANCE_WEBHOOK_SECRET is not set: every webhook is answered 404")
    start_metrics_listener(settings, get_engine)
    logger.info("webhook receiver on http://%s:%d%s", host, port, prefix or default_prefix())
    _log_ui(host, port, open_ui_on_loopback=open_ui_on_loopback)
    if workers > 1:
        if prefix is not None:
            raise ValueError("with several workers the prefix comes from the webhook base URL")
        uvicorn.run("worker.web.app:create_web_app", factory=True, workers=workers, **options)
    else:
        app = create_web_app(prefix=prefix, open_ui_on_loopback=open_ui_on_loopback)
        uvicorn.run(app, **options)
