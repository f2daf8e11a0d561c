"""Telling someone: a paused key, a provider that is down, a sweep that stopped.

Nobody watches the fleet at night. When something outside it stops the work, the fleet
pauses instead of failing jobs, and says so:

- one ERROR line with the fix, when it starts, then at most once an hour while it lasts
  (a Redis key per alert, set with NX and an hour's expiry, keeps every worker of the
  fleet to that one line), and one WARNING line when it ends;
- ``RELAYDANCE_ON_ALERT``, when set, names a Celery task of the studio's own (as
  ``on_done`` does) that receives ``{kind, alias, provider, reason, since, state, fix}``
  each time the line is logged, so that someone can be paged. Sending is best effort: an
  alert that the broker does not take is logged, and the next hour sends it again.

Kinds: ``key_paused`` (an account fault, or an operator's pause), ``model_paused`` (the
key may not use one model), ``provider_down`` (the provider's breaker is open) and
``sweep_stopped``. States: ``started``, ``ongoing``, ``ended``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import redis
from kombu.exceptions import KombuError

from worker.job.engine import Engine

__all__ = ["ALERT_EVERY", "Alert", "raise_alert"]

logger = logging.getLogger(__name__)

ALERT_EVERY = 3600  # seconds between two alerts of one ongoing condition
_PREFIX = "rd:alerts:"


@dataclass(frozen=True)
class Alert:
    """What an alert says; the ``RELAYDANCE_ON_ALERT`` task receives it as a dict."""

    kind: str
    alias: str
    provider: str
    reason: str
    since: float
    state: str = "started"
    fix: str = ""

    @property
    def scope(self) -> str:
        """What the alert is about, once per fleet: the kind and the key or provider."""
        return f"{self.kind}:{self.alias or self.provider or 'fleet'}"


def raise_alert(engine: Engine, alert: Alert) -> bool:
    """Log ``alert`` (and send it to ``RELAYDANCE_ON_ALERT``) unless this condition was
    already told within the hour; ``ended`` is always told. Returns whether it was told."""
    key = _PREFIX + alert.scope
    try:
        if alert.state == "ended":
            if not engine.redis.delete(key):
                return False  # never told that it started: nothing to end
        elif not engine.redis.set(key, repr(time.time()), nx=True, ex=ALERT_EVERY):
            return False
    except redis.RedisError as exc:
        logger.warning("alert %s not deduplicated (Redis: %s); told anyway", alert.scope, exc)
    _log(alert)
    _send(engine, alert)
    return True


def _log(alert: Alert) -> None:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(alert.since))
    about = f"key {alert.alias}" if alert.alias else f"provider {alert.provider}"
    if alert.state == "ended":
        logger.warning(
            "%s: %s ended (it had lasted since %s): %s", about, alert.kind, since, alert.reason
        )
        return
    if not (alert.alias or alert.provider):  # the fleet's own (a stopped sweep): its words first
        logger.error("%s (%s since %s). Fix: %s", alert.reason, alert.kind, since, alert.fix)
        return
    logger.error("%s: %s since %s: %s. Fix: %s", about, alert.kind, since, alert.reason, alert.fix)


def _send(engine: Engine, alert: Alert) -> None:
    name = engine.settings.on_alert
    if not name:
        return
    try:
        engine.send(name, asdict(alert))
    except (KombuError, redis.RedisError, OSError) as exc:
        logger.warning("alert %s not sent to %s (%s)", alert.scope, name, type(exc).__name__)
