"""Job-level metrics in the Prometheus exposition format, read from the job store and limits.

The figures only the job records know: jobs by state, per-key slots and waiting lines,
429s, polls per generated job, and estimated spend. They name key aliases and spend, so
they are never public: the ``web`` process serves them on a listener of their own,
bound to loopback by default (``RELAYDANCE_METRICS_BIND`` / ``RELAYDANCE_METRICS_PORT``,
:func:`start_metrics_listener`), and on the public receiver only behind
``RELAYDANCE_METRICS_TOKEN`` (see :mod:`worker.web.app`). Flower exports task-level metrics
of its own, behind its login. ``prometheus_client`` writes the text format.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from config.parts.web import WebSettings
from worker.job.counters import METRICS_KEY
from worker.job.engine import Engine
from worker.job.record import JobState
from worker.job.sweep_health import sweep_health

__all__ = [
    "CONTENT_TYPE",
    "METRICS_KEY",
    "bearer_allows",
    "render_metrics",
    "start_metrics_listener",
]

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_PER_KEY = (
    ("relaydance_key_limit_configured", "Configured concurrency limit.", "configured"),
    ("relaydance_key_limit_effective", "Effective limit after 429s (AIMD).", "effective"),
    ("relaydance_key_slots_in_use", "Concurrency slots held.", "in_use"),
    ("relaydance_key_jobs_waiting", "Jobs waiting in line for a slot.", "waiting"),
    ("relaydance_key_requests_last_minute", "HTTP calls in the last minute.",
     "requests_last_minute"),
    ("relaydance_key_rate_limited_last_hour", "HTTP 429s in the last hour.",
     "rate_limited_last_hour"),
)  # fmt: skip


class JobCollector(Collector):
    """Reads the figures from Redis at every scrape; nothing is kept in this process."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self._engine()
        counts = engine.store.counts()
        jobs = GaugeMetricFamily(
            "relaydance_jobs",
            "Jobs per state (final states count every job that reached them and has not expired).",
            labels=["state"],
        )
        for state in JobState:
            jobs.add_metric([state.value], float(counts.get(state.value, 0)))
        yield jobs
        yield GaugeMetricFamily(
            "relaydance_jobs_active", "Jobs not yet final.", value=engine.store.active_count()
        )
        yield from _per_key(engine)
        yield from _totals(engine)
        yield from _sweep(engine)


def _per_key(engine: Engine) -> Iterator[Metric]:
    snaps: dict[str, Any] = dict(engine.limit_snapshots())
    for name, help_, field in _PER_KEY:
        family = GaugeMetricFamily(name, help_, labels=["key"])
        for alias, snap in snaps.items():
            family.add_metric([alias], float(snap[field]))
        yield family
    paused = GaugeMetricFamily(
        "relaydance_key_paused",
        "1 while the key's line is paused (an account fault, a model, an operator, or its "
        "provider down); see relaydance keys.",
        labels=["key"],
    )
    since = GaugeMetricFamily(
        "relaydance_key_paused_since_seconds",
        "When the key's pause began (Unix time); absent when it is not paused.",
        labels=["key"],
    )
    for alias, snap in snaps.items():
        paused.add_metric([alias], 1.0 if snap["paused"] else 0.0)
        if snap["paused_since"] is not None:
            since.add_metric([alias], float(snap["paused_since"]))
    yield paused
    yield since
    breakers = GaugeMetricFamily(
        "relaydance_provider_down",
        "1 while the breaker of a provider route (provider and base URL) is open.",
        labels=["route"],
    )
    for route in sorted({engine.limits.route(alias) for alias in snaps}):
        breakers.add_metric([route], 0.0 if engine.limits.breakers.state(route) is None else 1.0)
    yield breakers


def _totals(engine: Engine) -> Iterator[Metric]:
    totals = {_text(k): _text(v) for k, v in engine.redis.hgetall(METRICS_KEY).items()}
    yield CounterMetricFamily(
        "relaydance_generated_jobs", "Jobs the provider generated.",
        value=float(totals.get("generated", 0)),
    )  # fmt: skip
    yield CounterMetricFamily(
        "relaydance_polls", "Polls spent on generated jobs.", value=float(totals.get("polls", 0))
    )
    in_doubt = engine.store.get_many(engine.store.in_state(JobState.SUBMIT_UNKNOWN))
    yield GaugeMetricFamily(
        "relaydance_possibly_billed_usd",
        "Estimated cost of jobs whose submission is unknown: they may be billed.",
        value=float(sum(job.cost or 0.0 for job in in_doubt if job is not None)),
    )
    yield CounterMetricFamily(
        "relaydance_spend_usd",
        "Spend on generated jobs: the provider's reported cost where it gives one, else the "
        "estimate (failed generations are not billed).",
        value=float(totals.get("spend_usd", 0.0)),
    )


def _sweep(engine: Engine) -> Iterator[Metric]:
    health = sweep_health(engine.redis, engine.settings)
    yield GaugeMetricFamily(
        "relaydance_sweep_stopped",
        "1 while workers run the sweep loop but no sweep has completed for several intervals "
        "(jobs whose message was lost are not resumed), or while no worker runs it; else 0.",
        value=float(health.state in ("stopped", "absent")),
    )
    yield GaugeMetricFamily(
        "relaydance_sweep_age_seconds",
        "Seconds since the last completed sweep (NaN: never).",
        value=float("nan") if health.last_age is None else health.last_age,
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def registry_for(engine: Callable[[], Engine]) -> CollectorRegistry:
    """A registry holding only the job figures (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobCollector(engine))
    return registry


def render_metrics(engine: Engine) -> str:
    """The current figures as Prometheus text exposition (format 0.0.4)."""
    return generate_latest(registry_for(lambda: engine)).decode()


def bearer_allows(settings: WebSettings, authorization: str) -> bool:
    """Whether an ``Authorization`` header carries ``RELAYDANCE_METRICS_TOKEN``."""
    token = settings.metrics_token
    if token is None:
        return False
    scheme, _, given = authorization.partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


def start_metrics_listener(settings: WebSettings, engine: Callable[[], Engine]) -> int | None:
    """Serve /metrics on ``metrics_bind:metrics_port`` in a daemon thread; the port, or
    None when ``metrics_port`` is 0 or already taken (logged: the receiver serves on).
    Loopback by default: Prometheus scrapes it from the same host (or network
    namespace), never through the public receiver."""
    if settings.metrics_port == 0:
        return None
    try:
        server, _ = start_http_server(
            settings.metrics_port, addr=settings.metrics_bind, registry=registry_for(engine)
        )
    except OSError as exc:
        # Webhooks matter more than metrics: a second receiver on this host (or anything
        # else on the port) must not stop this one from taking deliveries.
        logger.error(
            "metrics not served: %s:%d is not available (%s); set RELAYDANCE_METRICS_PORT "
            "to a free port, or 0 to turn the listener off",
            settings.metrics_bind, settings.metrics_port, exc.strerror or exc,
        )  # fmt: skip
        return None
    port = int(server.server_address[1])
    logger.info("metrics on http://%s:%d/metrics", settings.metrics_bind, port)
    return port
