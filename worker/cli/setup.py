"""``relaydance models`` and ``relaydance doctor``: what the fleet offers, and whether it works."""

from __future__ import annotations

import json
import sys

import click

from worker.cli.errors import EXIT_FAILED, EXIT_OK

__all__ = ["doctor", "models"]


@click.command(short_help="Every model of every provider: lengths, ratios, audio, price.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: rows per provider.")
def models(as_json: bool) -> None:
    """Every model of every provider catalogue: durations, ratios, resolutions, audio,
    reference limits and price per second (with RELAYDANCE_PRICES applied); then the image
    models: sizes, images per request and the price counted per image."""
    from worker.render.model_list import (
        catalogues,
        image_rows,
        model_rows,
        render_image_table,
        render_table,
    )

    rows, images = model_rows(catalogues()), image_rows()
    if as_json:
        click.echo(json.dumps({"providers": rows, "images": images}))
        return
    click.echo(render_table(rows) + "\n\n" + render_image_table(images))


@click.command(short_help="Check Redis, keys, provider, receiver, output dir, beat, workers.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: one object per check.")
def doctor(as_json: bool) -> None:
    """Check the whole setup: settings, Redis, keys, provider reachability, the webhook
    receiver, the output directory, beat and workers. Exit 0 when nothing failed, else 1."""
    from worker.cli.doctor import run_checks

    checks = run_checks()
    failed = any(c.status == "fail" for c in checks)
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks]))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            click.echo(f"{c.status.upper():<4}  {c.name:<{width}}  {c.detail}")
        click.echo("some checks failed" if failed else "all checks passed", err=True)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)
