"""``relaydance models`` and help that is never cut short.

``relaydance doctor``, which needs a Redis and a provider to check, is in
tests/integration/test_doctor.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from worker.cli.main import main
from worker.render.catalogue import MODELS
from worker.render.model_list import catalogues

# -- help ------------------------------------------------------------------------------------


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


def test_no_command_help_is_cut_short_in_any_listing() -> None:
    for name, command in _commands(main):
        # Narrower than any terminal: a summary that only fits by truncation fails here.
        assert not command.get_short_help_str(limit=30).endswith("..."), name
    for args in ([], ["batch"], ["schedule"]):
        listing = CliRunner().invoke(main, [*args, "--help"], terminal_width=80).output
        commands = listing.split("Commands:", 1)[1]
        assert "..." not in commands, listing


def test_every_option_of_every_command_says_what_it_is_for() -> None:
    for name, command in _commands(main):
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version"):
                assert param.help, f"relaydance {name} {param.opts[0]} has no help"


def test_render_help_points_to_the_models_command() -> None:
    text = CliRunner().invoke(main, ["render", "--help"], terminal_width=100).output
    assert "relaydance models" in text
    assert "README" not in text


# -- models ----------------------------------------------------------------------------------


def test_models_lists_every_catalogue_entry_with_its_limits_and_price() -> None:
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    assert "relaydance (11 models)" in result.output
    for model_id, model in MODELS.items():
        line = next(row for row in result.output.splitlines() if row.startswith(model_id + " "))
        assert f"{model.min_seconds}-{model.max_seconds}" in line
        assert ",".join(model.ratios) in line and ",".join(model.resolutions) in line
    fast = next(r for r in result.output.splitlines() if r.startswith("doubao-seedance-2-0-fast"))
    assert "9 images, 3 videos, 3 audio, frames" in fast and "0.140" in fast  # 28 credits/s


def test_models_shows_audio_always_for_the_model_that_always_has_sound() -> None:
    text = CliRunner().invoke(main, ["models"]).output.splitlines()
    with_audio = next(r for r in text if r.startswith("seedance-1-5-pro-with-audio "))
    no_audio = next(r for r in text if r.startswith("seedance-1-5-pro-no-audio "))
    assert " always " in with_audio and "Generated audio included" in with_audio
    assert " no " in no_audio
    rows = json.loads(CliRunner().invoke(main, ["models", "--json"]).output)["providers"]
    audio = {r["model"]: r["audio"] for r in rows["relaydance"]}
    assert audio["seedance-1-5-pro-with-audio"] == "always"
    assert audio["doubao-seedance-2-0-720p"] == "optional"
    assert audio["seedance-1-5-pro-no-audio"] == "no"


def test_models_lists_every_model_of_every_provider() -> None:
    found = catalogues()
    assert set(found) == {"relaydance", "kinovi"}
    result = CliRunner().invoke(main, ["models", "--json"])
    rows = json.loads(result.output)["providers"]
    for provider, models in found.items():
        assert sorted(r["model"] for r in rows[provider]) == sorted(models)
    assert sorted(found["kinovi"]) == ["seedance-20", "seedance2-fast"]
    fast = next(r for r in rows["kinovi"] if r["model"] == "seedance2-fast")
    assert fast["seconds"] == "4-15" and fast["usd_per_second"] == pytest.approx(0.14)
    text = CliRunner().invoke(main, ["models"]).output
    assert "kinovi (2 models)" in text and "seedance2-fast" in text
    assert f"relaydance ({len(found['relaydance'])} models)" in text


def test_the_readme_links_the_models_command() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "relaydance models" in readme


def test_the_readmes_cli_table_names_every_command() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## CLI", 1)[1].split("\n## ", 1)[0]
    for name in main.list_commands(click.Context(main)):
        assert f"`relaydance {name}" in table or f"`relaydance {name} " in table, name
