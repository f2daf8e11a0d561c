"""The per-process context every step uses: settings, Redis, job store, limits, clients.

Built on first use, never at import; rebuilt after a prefork worker forks. One API client
per provider and base URL: a job's alias picks it (:meth:`Engine.client_for`), so one
fleet serves RelayDance and Kinovi keys at once; ``client`` is the default provider's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from config.redis_url import DEFAULT_REDIS_URL
from config.settings import Settings, get_settings
from worker.infra.celery_app import app
from worker.infra.connections import redis_client
from worker.infra.durability import Durability
from worker.job.store import JobStore
from worker.job.timing import Timing
from worker.limits import KeyLimits, LimitSnapshot
from worker.limits.breaker import route_id
from worker.provider.client import ApiClient
from worker.provider.download import make_download_client
from worker.storage import Storage, make_storage

__all__ = ["Engine", "get_engine", "reset_engine"]

logger = logging.getLogger(__name__)


@dataclass
class Engine:
    """Everything a step needs, made once per process."""

    settings: Settings
    redis: redis.Redis
    store: JobStore
    limits: KeyLimits
    timing: Timing
    client: ApiClient
    downloads: httpx.Client
    storage: Storage  # where finished clips go: a directory or a bucket
    # Whether a task name is registered with the workers: a worker's own registry, which
    # holds every task it runs; None where this process cannot know (a producer, the CLI).
    registered: Callable[[str], bool] | None = field(default=None, repr=False)
    # Clients of the other (provider, base URL) routes, made on first use.
    routes: dict[tuple[str, str], ApiClient] = field(default_factory=dict, repr=False)
    _routes_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.bind_limits()

    def bind_limits(self) -> None:
        """Limits find an alias's configured limit, rate and provider route in this engine's
        settings, read at each call: settings replaced on the engine are the ones that count."""
        self.limits.look_up_with(
            limit_for=lambda alias: self.settings.concurrency_for(alias),
            rate_for=lambda alias: self.settings.rate_for(alias),
            route_for=self.route_for,
        )
        self.limits.configure_pauses(
            probe_every=self.settings.pause_probe_seconds,
            breaker_failures=self.settings.breaker_failures,
        )

    def route_for(self, alias: str) -> str:
        """The provider route of an alias: its provider and base URL, one breaker each."""
        return route_id(self.settings.provider_for(alias), self.settings.base_url_for(alias))

    @classmethod
    def from_settings(
        cls, settings: Settings, *, registered: Callable[[str], bool] | None = None
    ) -> Engine:
        """Connect to Redis and build the clients the settings describe; ``registered``
        tells a registered task name, in a worker."""
        url = settings.redis_url or DEFAULT_REDIS_URL
        client = redis_client(
            url,
            master=settings.redis_sentinel_master,
            decode_responses=True,
            health_check_interval=30,
        )
        durability = Durability(
            client, replicas=settings.redis_min_replicas, timeout_ms=settings.redis_wait_ms
        )
        return cls(
            settings=settings,
            redis=client,
            store=JobStore(
                client, retention_seconds=settings.job_retention_seconds, durability=durability
            ),
            limits=KeyLimits(client),
            timing=Timing(client, scale=settings.time_scale),
            client=ApiClient.from_settings(settings),
            downloads=make_download_client(
                connect_timeout=settings.http_connect_timeout,
                read_timeout=settings.http_read_timeout,
            ),
            storage=make_storage(settings),
            registered=registered,
        )

    def client_for(self, alias: str) -> ApiClient:
        """The client of the alias's provider and base URL (``client`` for the default)."""
        settings = self.settings
        route = (settings.provider_for(alias), settings.base_url_for(alias))
        if route == (settings.dialect, settings.base_url):
            return self.client
        with self._routes_lock:
            found = self.routes.get(route)
            if found is None:
                found = self.routes[route] = ApiClient.from_settings(settings, alias=alias)
            return found

    def limit_snapshots(self) -> dict[str, LimitSnapshot]:
        """Per key alias (configured or seen): configured and effective limit, use, 429s."""
        aliases = sorted(set(self.settings.keys()) | set(self.limits.aliases_seen()))
        return {alias: self.limits.snapshot(alias) for alias in aliases}

    def send(
        self,
        name: str,
        *args: Any,
        countdown: float | None = None,
        shown: str | None = None,
        producer: Any = None,
    ) -> None:
        """Send a task by name: the engine never imports the tasks package.

        ``shown`` is what Flower shows for its arguments (never a secret); ``producer``
        one the caller holds for many sends.
        """
        options: dict[str, Any] = {} if shown is None else {"argsrepr": "()", "kwargsrepr": shown}
        app.send_task(
            name, args=list(args), countdown=countdown, ignore_result=True, producer=producer,
            **options,
        )  # fmt: skip

    def close(self) -> None:
        """Close connections and pools."""
        self.client.close()
        for routed in self.routes.values():
            routed.close()
        self.downloads.close()
        self.storage.close()
        self.redis.close()


_lock = threading.Lock()
_engine: Engine | None = None
_registered: Callable[[str], bool] | None = None


def get_engine() -> Engine:
    """The process-wide engine, built on first use."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = Engine.from_settings(get_settings(), registered=_registered)
    return _engine


def reset_engine(*, registered: Callable[[str], bool] | None = None) -> None:
    """Forget the process-wide engine (after a fork, or between tests); the next is built
    with ``registered`` (a worker's task registry, see :attr:`Engine.registered`)."""
    global _engine, _registered
    with _lock:
        _engine, _registered = None, registered
