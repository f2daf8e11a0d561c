"""Webhook receivers for the producer's own web app, over the one framework-agnostic handler.

- :mod:`worker.web.integrations.flask`: ``relaydance_blueprint(url_prefix="/hooks")``
- :mod:`worker.web.integrations.django`:
  ``path("hooks/", include("worker.web.integrations.django"))``

Each adapter reads at most ``MAX_BODY_BYTES + 1`` bytes of the body and hands it to
:func:`worker.web.receiver.handle_webhook`; nothing here is imported unless asked for, so
neither framework is needed by the worker. The webhook base URL must point at the mount:
``RELAYDANCE_WEBHOOK_BASE_URL=https://your.host/hooks``. Request paths carry callback
tokens: attach :class:`worker.infra.logs.RedactingFilter` to the server's access logger.
"""

from __future__ import annotations

__all__: list[str] = []
