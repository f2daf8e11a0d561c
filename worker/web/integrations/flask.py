"""Receive RelayDance webhooks in a Flask app: ``app.register_blueprint(relaydance_blueprint())``.

With Flask-WTF's ``CSRFProtect`` on, exempt the blueprint (``csrf.exempt(bp)``): the
provider posts no CSRF token; the HMAC token in the path is the authentication.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from worker.web.receiver import MAX_BODY_BYTES, handle_webhook, receiver_health

__all__ = ["relaydance_blueprint"]


def relaydance_blueprint(
    url_prefix: str = "/hooks", *, name: str = "relaydance_webhooks"
) -> Blueprint:
    """A blueprint with ``POST <url_prefix>/<job_id>/<token>``, the webhook receiver, and
    ``GET <url_prefix>/healthz``, which workers call through the base URL at start."""
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    @blueprint.get("/healthz")
    def healthz() -> tuple[Response, int]:
        status, payload = receiver_health()
        return jsonify(payload), status

    @blueprint.post("/<job_id>/<token>")
    def webhook(job_id: str, token: str) -> tuple[Response, int]:
        declared = request.content_length
        if declared is not None and declared > MAX_BODY_BYTES:
            body = b"\0" * (MAX_BODY_BYTES + 1)  # refused by size; not worth reading
        else:
            body = request.stream.read(MAX_BODY_BYTES + 1)
        status, payload = handle_webhook(
            job_id, token, body, request.content_type or "", claim=request.args.get("c")
        )
        return jsonify(payload), status

    return blueprint
