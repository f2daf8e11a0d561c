"""``relaydance keys``: which keys are paused and why, and the operator's pause and resume.

A key pauses by itself when its provider's account refuses it (a revoked key, an empty
balance, API access off, a model it may not use) and resumes by itself when a probe gets
through; ``relaydance keys resume`` reopens its line at once (after a top-up, say), and
``relaydance keys pause`` stops it on purpose (no probes until it is resumed).
"""

from __future__ import annotations

import json
import time

import click

from worker.cli.errors import die

__all__ = ["keys"]


def _when(at: float | None) -> str:
    if at is None:
        return "never (an operator's pause)"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _known(alias: str) -> None:
    from worker.job.engine import get_engine

    engine = get_engine()
    known = set(engine.settings.keys()) | set(engine.limits.aliases_seen())
    if alias not in known:
        die(
            f"no key alias {alias!r}",
            [f"known aliases: {', '.join(sorted(known)) or 'none'} (RELAYDANCE_API_KEYS)"],
        )


@click.group("keys", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
@click.pass_context
def keys(ctx: click.Context, as_json: bool) -> None:
    """Which keys are paused (by their account, a model, an operator) and why."""
    if ctx.invoked_subcommand is not None:
        return
    from worker.job.engine import get_engine

    engine = get_engine()
    aliases = sorted(set(engine.settings.keys()) | set(engine.limits.aliases_seen()))
    for alias in aliases:
        holds = engine.limits.paused(alias)
        route = engine.limits.route(alias)
        breaker = engine.limits.breakers.state(route)
        if as_json:
            click.echo(json.dumps({
                "key": alias, "provider": engine.settings.provider_for(alias), "route": route,
                "pauses": [vars(h) for h in holds],
                "provider_down": None if breaker is None else vars(breaker),
            }))  # fmt: skip
            continue
        state = "paused" if holds or breaker else "ok"
        click.echo(f"{alias}  provider={engine.settings.provider_for(alias)}  {state}")
        for hold in holds:
            scope = f"model {hold.model}" if hold.model else "key"
            click.echo(
                f"    {scope}: {hold.kind} since {_when(hold.since)}; {hold.refusals} "
                f"refusal(s), {hold.probes} probe(s); next probe {_when(hold.probe_at)}"
            )
            click.echo(f"      {hold.reason}")
        if breaker is not None:
            click.echo(
                f"    provider down since {_when(breaker.since)}; {breaker.probes} probe(s); "
                f"next probe {_when(breaker.probe_at)}"
            )
            click.echo(f"      {breaker.reason}")
    if not aliases and not as_json:
        click.echo("no key aliases configured or seen", err=True)


@keys.command("pause")
@click.argument("alias")
@click.option("--model", help="Pause only this model's submissions on the key.")
@click.option(
    "--reason",
    default="paused by an operator",
    show_default=True,
    help="Why, as `relaydance keys`, status and the jobs page will show it.",
)
def pause(alias: str, model: str | None, reason: str) -> None:
    """Stop the key's submissions on purpose (no probes) until `keys resume`."""
    from worker.job.engine import get_engine

    _known(alias)
    engine = get_engine()
    engine.limits.hold(alias, kind="operator", reason=reason[:300], model=model)
    what = f"model {model} on key {alias}" if model else f"key {alias}"
    click.echo(f"{what} paused: its jobs wait, in order, until `relaydance keys resume {alias}`")


@keys.command("resume")
@click.argument("alias")
@click.option("--model", help="Resume only this model (default: the key and all its models).")
def resume(alias: str, model: str | None) -> None:
    """Reopen a paused key's line now (after a top-up or a new key, say)."""
    from worker.job.calls import resume_line
    from worker.job.engine import get_engine

    _known(alias)
    engine = get_engine()
    lifted = []
    models = [model] if model else [h.model for h in engine.limits.paused(alias) if h.model]
    parked: list[str] = []
    if not model:
        found = engine.limits.lift(alias)
        if found.lifted:
            lifted.append(f"key ({found.kind})")
    for name in models:
        found = engine.limits.lift(alias, model=name)
        if found.lifted:
            lifted.append(f"model {name} ({found.kind})")
            parked.extend(found.parked)
    if not lifted:
        click.echo(f"key {alias} was not paused{f' for model {model}' if model else ''}")
        return
    nudged = resume_line(engine, alias, also=tuple(parked))
    click.echo(f"key {alias}: resumed {', '.join(lifted)}; {len(nudged)} job(s) moving")
