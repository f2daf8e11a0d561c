"""Flower never runs without a login, however it is launched, and its task list shows jobs.

``celery -A worker flower`` imports this app before Flower reads its options, whatever the
working directory, wrapper or process manager. When the command being run is ``flower``,
:func:`install_flower_guard` registers a callback with Flower's option parser
(``tornado.options``), which runs once the command line and the ``FLOWER_*`` variables
are read:

- without a login (``FLOWER_BASIC_AUTH=user:password``, ``--basic-auth``, or OAuth with
  ``--auth``) it prints why and exits with status 2 before anything listens;
- Flower's own ``/metrics`` and ``/healthcheck``, which Flower serves without its login,
  require it like every other page (:func:`protect_open_endpoints`): the metrics name
  every task and worker. Prometheus scrapes Flower with ``basic_auth`` in its job;
- Flower's default task columns gain ``kwargs``, which carry ``job=<job id> model=...``
  (see ``worker.job.advance.describe``), so the task list shows which job each task moves.
  A ``--tasks-columns`` of your own is left alone.

Any other process that imports the app (workers, beat, the CLI, web apps) is untouched.
"""

from __future__ import annotations

import sys

__all__ = [
    "FLOWER_COLUMNS",
    "check_flower_options",
    "install_flower_guard",
    "launching_flower",
    "protect_open_endpoints",
]

FLOWER_DEFAULT_COLUMNS = "name,uuid,state,received,runtime,worker"  # Flower 2.x's default
FLOWER_COLUMNS = "name,uuid,state,kwargs,received,runtime,worker"
REFUSAL = (
    "flower: not started: set FLOWER_BASIC_AUTH=user:password (Flower never runs without "
    "a login; the variable keeps the password off the command line)"
)


def launching_flower() -> bool:
    """Whether this process is running the ``celery ... flower`` command."""
    click = sys.modules.get("click")  # not loaded: not a command line at all
    if click is None:
        return False
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if "flower" in (ctx.invoked_subcommand, ctx.info_name):
            return True
        ctx = ctx.parent
    return False


def _is_login(entry: object) -> bool:
    user, colon, password = str(entry).partition(":")
    return bool(colon and user.strip() and password.strip())


def check_flower_options(options: object) -> None:
    """Refuse to go on without a login; add the kwargs column to the default columns."""
    basic = list(getattr(options, "basic_auth", None) or [])
    oauth = str(getattr(options, "auth", "") or "")
    if not oauth and (not basic or not all(_is_login(entry) for entry in basic)):
        print(REFUSAL, file=sys.stderr, flush=True)
        raise SystemExit(2)
    if getattr(options, "tasks_columns", None) == FLOWER_DEFAULT_COLUMNS:
        options.tasks_columns = FLOWER_COLUMNS  # type: ignore[attr-defined]
    protect_open_endpoints()


def protect_open_endpoints() -> None:
    """Put Flower's ``/metrics`` and ``/healthcheck`` behind its login (idempotent).

    Flower leaves both handlers open; ``tornado.web.authenticated`` runs Flower's own
    ``get_current_user`` first, which answers 401 to a missing or wrong basic login and
    sends an OAuth user without a session to the login page.
    """
    import tornado.web
    from flower.views import monitor

    for handler in (monitor.Metrics, monitor.Healthcheck):
        get = handler.get
        if getattr(get, "__relaydance_guarded__", False):
            continue
        guarded = tornado.web.authenticated(get)
        guarded.__relaydance_guarded__ = True  # type: ignore[attr-defined]
        handler.get = guarded


def install_flower_guard() -> None:
    """When this process is launching Flower, check its options once they are parsed."""
    if not launching_flower():
        return
    from tornado.options import options

    options.add_parse_callback(lambda: check_flower_options(options))
