"""``relaydance simulate`` / ``python -m simulator``: one click option per knob.

Options default to unset so that ``RELAYDANCE_SIM_*`` environment variables apply unless a
flag overrides them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args, get_origin

import click
from pydantic import ValidationError

from simulator.config import ENV_PREFIX, SimConfig
from simulator.server import serve

__all__ = ["cli_options", "config_from_options", "main", "simulate"]

F = TypeVar("F", bound=Callable[..., Any])

_ALIASES = {"gen_time_mean": ("--gen-time",)}


def _click_type(annotation: Any) -> click.ParamType[Any]:
    if get_origin(annotation) is Literal:
        return click.Choice(get_args(annotation))
    if annotation is float:
        return click.FLOAT
    if annotation is str:
        return click.STRING
    return click.INT  # int and int | None (the seed)


def cli_options(func: F) -> F:
    """Add one option per :class:`SimConfig` knob (``--gen-time-mean``, ``--webhooks``...)."""
    for name, field in reversed(SimConfig.model_fields.items()):
        flag = "--" + name.replace("_", "-")
        env = f"{ENV_PREFIX}{name.upper()}"
        help_text = f"{field.description} [env {env}; default {field.default!r}]"
        if field.annotation is bool:
            decls = [f"{flag}/--no-{flag[2:]}"]
            func = click.option(*decls, name, default=None, help=help_text)(func)
        else:
            decls = [flag, *_ALIASES.get(name, ())]
            func = click.option(
                *decls, name, type=_click_type(field.annotation), default=None, help=help_text
            )(func)
    return func


def config_from_options(options: dict[str, Any]) -> SimConfig:
    """A :class:`SimConfig` from the environment overridden by the options that were given."""
    given = {k: v for k, v in options.items() if k in SimConfig.model_fields and v is not None}
    try:
        return SimConfig(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"invalid simulator option: {problems}") from None


@click.command(
    "simulate", short_help="Run a local RelayDance simulator (base url http://HOST:PORT/v1)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn's log level.",
)
@cli_options
def simulate(host: str, port: int, log_level: str, **options: Any) -> None:
    """Run a local provider simulator: RelayDance at /v1, Kinovi at /api/v1 (--dialect)."""
    config = config_from_options(options)
    for name, path in (("RelayDance", "/v1"), ("Kinovi", "/api/v1")):
        if config.dialect in ("both", name.lower()):
            click.echo(f"{name} simulator: http://{host}:{port}{path}", err=True)
    click.echo(f"inspect: http://{host}:{port}/_sim/stats", err=True)
    serve(host=host, port=port, config=config, log_level=log_level)


def main() -> None:
    """Entry point of ``python -m simulator``."""
    simulate(prog_name="python -m simulator")
