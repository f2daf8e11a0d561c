"""``relaydance doctor``: check the whole setup, one pass/fail line per part.

Settings, Redis (and whether it keeps what it is given: eviction policy, persistence,
replicas, and failover safety: whether a claim waits for a replica before its POST), API
keys, the provider (reached with each key), the webhook receiver (through the public base
URL, and the count of jobs that ended without their webhook), the output directory, the
sweep (run by the workers in turn), beat (only needed for schedules) and the workers. Each
check says what it found and, on failure, what to do. Nothing here costs money: the
provider is asked for a task that does not exist, which it answers 404
to a valid key and 401 to a wrong one.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import redis
from kombu.exceptions import KombuError

from config.redis_url import DEFAULT_REDIS_URL, describe_redis_url, is_sentinel
from config.settings import Settings, SettingsError, load_settings
from worker.cli.devenv import redis_source
from worker.errors import AccountFault, NotFound, PermanentError, TransientError, Unauthorized
from worker.infra.connections import redis_client
from worker.infra.outage import is_redis_outage
from worker.infra.redis_checks import durability_findings
from worker.infra.timefmt import span
from worker.job.reachability import check_receiver, missed_count
from worker.job.sweep_health import sweep_health
from worker.limits import KeyLimits
from worker.limits.breaker import route_id
from worker.provider.client import ApiClient

__all__ = ["Check", "run_checks"]

Status = Literal["pass", "fail", "warn", "skip"]
PROBE_TASK_ID = "relaydance-doctor-probe"  # a task id no provider has


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str


def _redis(settings: Settings) -> tuple[list[Check], redis.Redis | None]:
    url = settings.redis_url or DEFAULT_REDIS_URL
    where = describe_redis_url(url, master=settings.redis_sentinel_master)
    source = redis_source(settings)
    client = redis_client(
        url, master=settings.redis_sentinel_master, socket_timeout=3.0, socket_connect_timeout=3.0
    )
    try:
        client.ping()
        findings = durability_findings(
            client, sentinel=is_sentinel(url), min_replicas=settings.redis_min_replicas,
            wait_ms=settings.redis_wait_ms,
        )  # fmt: skip
    except (redis.RedisError, OSError) as exc:
        return [Check("redis", "fail", f"Redis at {where} ({source}) is unreachable "
                      f"({type(exc).__name__}): start it, or set REDIS_URL to the fleet's "
                      "Redis")], None  # fmt: skip
    checks = [Check("redis", "pass", f"Redis at {where} answers ({source})")]
    checks += [Check(f.name, f.status, f.detail) for f in findings]
    return checks, client


def _keys(settings: Settings) -> Check:
    aliases = sorted(settings.keys())
    if not aliases:
        return Check("keys", "fail", "no API key: set RELAYDANCE_API_KEY (or RELAYDANCE_API_KEYS)")
    return Check("keys", "pass", f"aliases: {', '.join(aliases)} (values never shown)")


def _provider(settings: Settings) -> list[Check]:
    checks = []
    with ApiClient.from_settings(settings) as client:
        for alias, key in sorted(settings.keys().items()):
            name = f"provider[{alias}]"
            try:
                client.get_task(PROBE_TASK_ID, api_key=key)
            except NotFound:
                checks.append(Check(name, "pass", f"{settings.base_url} reachable; key accepted"))
            except Unauthorized:
                checks.append(Check(name, "fail", f"{settings.base_url} refused the key (401)"))
            except AccountFault as exc:
                checks.append(Check(name, "fail", f"{settings.base_url} refused the key: {exc}"))
            except TransientError as exc:
                checks.append(Check(name, "fail", f"{settings.base_url} unreachable: {exc.code}"))
            except PermanentError as exc:
                checks.append(Check(name, "warn", f"{settings.base_url} answered {exc.code}"))
            else:
                checks.append(Check(name, "pass", f"{settings.base_url} reachable"))
    return checks


def _receiver(settings: Settings, client: redis.Redis | None) -> list[Check]:
    if not settings.webhook_base_url:
        return [Check("receiver", "skip", "webhooks off (RELAYDANCE_WEBHOOK_BASE_URL unset): "
                                          "jobs are polled")]  # fmt: skip
    check = check_receiver(settings)
    assert check is not None
    late = span(settings.webhook_safety_poll_seconds)
    checks = [
        Check("receiver", "pass", f"GET {check.url} answers")
        if check.ok
        else Check("receiver", "fail", f"GET {check.url} {check.detail}: webhooks will not "
                                       f"arrive and jobs wait for the safety poll ({late})")
    ]  # fmt: skip
    missed = missed_count(client) if client is not None else 0
    if missed:
        checks.append(Check("webhooks", "warn", f"{missed} job(s) ended without their webhook"))
    return checks


def _pauses(settings: Settings, client: redis.Redis) -> Check:
    """Keys paused by their account or an operator, and providers whose breaker is open."""
    limits = KeyLimits(
        client,
        route_for=lambda a: route_id(settings.provider_for(a), settings.base_url_for(a)),
    )
    found = []
    for alias in sorted(set(settings.keys()) | set(limits.aliases_seen())):
        paused, since = limits.pause_summary(alias)
        if paused:
            found.append(
                f"{alias} since {span(time.time() - (since or time.time()))} ago: {paused}"
            )
    if not found:
        return Check("pauses", "pass", "no key paused, no provider down")
    return Check(
        "pauses", "warn",
        "; ".join(found) + ". Each resumes by itself when a probe gets through; `relaydance "
        "keys` shows them, `relaydance keys resume ALIAS` reopens one now",
    )  # fmt: skip


def _output_dir(settings: Settings) -> Check:
    path = Path(settings.output_dir).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("output", "fail", f"{path} is not writable: {exc.strerror or exc}")
    free = shutil.disk_usage(path).free / 1024**3
    return Check("output", "pass", f"{path} writable, {free:.1f} GiB free")


def _sweep(settings: Settings, client: redis.Redis) -> Check:
    health = sweep_health(client, settings)
    # A fleet younger than one interval is starting, not failing.
    status: Status = (
        "pass" if health.state == "running" else "warn" if health.state == "starting" else "fail"
    )
    return Check("sweep", status, health.describe())


def _beat(client: redis.Redis) -> Check:
    from redbeat.schedulers import ensure_conf

    from worker.infra.celery_app import app

    conf = ensure_conf(app)
    entries = int(client.zcard(conf.schedule_key))
    held = client.pttl(conf.lock_key)
    if held is not None and int(held) > 0:
        return Check("beat", "pass", f"beat holds its lock; {entries} schedule(s)")
    if not entries:
        return Check("beat", "skip", "no schedule (relaydance schedule add): beat is not needed")
    return Check("beat", "fail", f"{entries} schedule(s) but no beat runs them: start "
                 "`celery -A worker beat --loglevel INFO` (more wait as standbys)")  # fmt: skip


def _workers(timeout: float) -> Check:
    from worker.infra.celery_app import app

    try:
        replies = app.control.ping(timeout=timeout) or []
    except (KombuError, redis.RedisError, OSError) as exc:
        return Check("workers", "fail", f"could not ask: {type(exc).__name__}")
    if not replies:
        return Check("workers", "fail", "no worker answers: start `celery -A worker worker "
                                        "--loglevel INFO`")  # fmt: skip
    return Check("workers", "pass", f"{len(replies)} worker(s) answer")


def run_checks(
    *, settings: Callable[[], Settings] = load_settings, ping_timeout: float = 2.0
) -> list[Check]:
    """Every check, in order; checks that need a failed part are skipped, not failed."""
    try:
        loaded = settings()
    except SettingsError as exc:
        return [Check("settings", "fail", str(exc))]
    checks = [Check("settings", "pass", f"valid (provider dialect {loaded.dialect})")]
    redis_checks, client = _redis(loaded)
    checks += [*redis_checks, _keys(loaded)]
    checks += _provider(loaded) if loaded.keys() else []
    checks += _receiver(loaded, client)
    checks.append(_output_dir(loaded))
    if client is None:
        checks += [
            Check(name, "skip", "needs Redis") for name in ("sweep", "beat", "pauses", "workers")
        ]
        return checks
    try:
        checks += [_sweep(loaded, client), _beat(client), _pauses(loaded, client),
                   _workers(ping_timeout)]  # fmt: skip
    except Exception as exc:  # Redis went away halfway: say so, never a traceback
        if not is_redis_outage(exc):
            raise
        checks.append(Check("redis", "fail", f"Redis stopped answering ({type(exc).__name__})"))
    finally:
        client.close()
    return checks
