"""Producing Kinovi jobs: from the CLI and ``enqueue_render``, the documented bodies reach
the provider exactly, and every refused request stops before anything reaches it.

A real redis-server and the session's simulator (both dialects); no worker: the submit
step runs here, so the body it posts can be recorded on its way out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from config.settings import get_settings
from simulator.testing import SimulatorProcess
from tasks import enqueue_render
from tests.fleet import point_this_process_at
from tests.pipeline_helpers import run_step
from tests.unit.test_kinovi_rules import BAD, DOCUMENTED
from worker.cli.main import main
from worker.errors import InvalidRequest
from worker.job.engine import Engine, get_engine, reset_engine
from worker.provider.client import ApiClient

KINOVI_KEY = "kin-producer-key"


@pytest.fixture
def env(
    redis_url: str, sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    settings = {
        "REDIS_URL": redis_url,
        "RELAYDANCE_BASE_URL": sim.url,
        "RELAYDANCE_API_KEYS": json.dumps({
            "studio": "sk-producer-relaydance",
            "kin": {"key": KINOVI_KEY, "provider": "kinovi", "base_url": sim.kinovi_url},
        }),
        "RELAYDANCE_WEBHOOK_BASE_URL": "http://127.0.0.1:9/hooks",
        "RELAYDANCE_WEBHOOK_SECRET": "producer-secret-Yg2lvPC7IX-9vFUmXt7orMomBYIRoQVY",
    }  # fmt: skip
    point_this_process_at(settings, monkeypatch)
    yield settings
    get_settings.cache_clear()  # the next test reads its own environment
    reset_engine()


class Posted:
    """Stands in for Kinovi on the alias's route and keeps every body posted to it."""

    def __init__(self, engine: Engine, base_url: str) -> None:
        self.bodies: list[dict[str, Any]] = []
        transport = httpx.MockTransport(self._answer)
        engine.routes[("kinovi", base_url)] = ApiClient(
            base_url=base_url, transport=transport, dialect="kinovi"
        )

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"taskId": f"task_{len(self.bodies)}"})


def _cli_args(fields: dict[str, Any]) -> list[str]:
    args = ["render", "--key", "kin", "--model", fields["model"], "--prompt", fields["prompt"]]
    for name in ("seconds", "ratio", "mode"):
        if name in fields:
            args += [f"--{name}", str(fields[name])]
    for name, flag in (("images", "--image"), ("videos", "--video"), ("audio", "--audio")):
        for value in fields.get(name, []):
            args += [flag, value]
    return args


def _without_callback(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "callBackUrl"}


@pytest.mark.parametrize(("fields", "callback", "documented"), DOCUMENTED)
def test_the_cli_dry_run_prints_each_documented_kinovi_body(
    env: dict[str, str], fields: dict[str, Any], callback: str | None, documented: dict[str, Any]
) -> None:
    result = CliRunner().invoke(main, [*_cli_args(fields), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["provider"] == "kinovi"
    assert out["body"] == _without_callback(documented)  # the callback comes with a job
    assert out["uploads"] == []


@pytest.mark.parametrize(("fields", "callback", "documented"), DOCUMENTED)
def test_enqueue_render_and_the_cli_post_each_documented_kinovi_body(
    env: dict[str, str], fields: dict[str, Any], callback: str | None, documented: dict[str, Any]
) -> None:
    engine = get_engine()
    posted = Posted(engine, env_kinovi_url(env))
    from_api = enqueue_render(fields, key="kin")
    result = CliRunner().invoke(main, _cli_args(fields))
    assert result.exit_code == 0, result.output
    from_cli = result.stdout.strip()
    for job_id in (from_api, from_cli):
        assert run_step(engine, "submit", job_id, seq=0).action == "next"
    assert len(posted.bodies) == 2
    for job_id, body in zip((from_api, from_cli), posted.bodies, strict=True):
        assert body.pop("callBackUrl").startswith(f"http://127.0.0.1:9/hooks/{job_id}/")
        assert body == _without_callback(documented)


def env_kinovi_url(env: dict[str, str]) -> str:
    return str(json.loads(env["RELAYDANCE_API_KEYS"])["kin"]["base_url"])


@pytest.mark.parametrize(("fields", "field", "words"), BAD)
def test_every_refused_kinovi_request_stops_before_the_provider_and_the_queue(
    env: dict[str, str], sim: SimulatorProcess, fields: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        enqueue_render({"model": "seedance-20", "prompt": "a clip", **fields}, key="kin")
    assert any(f == field and words in m for f, m in info.value.problems)
    assert get_engine().store.counts() == {}  # no job was recorded
    seen = sim.stats()
    assert (seen["submissions"], seen["bad_requests"], seen["polls"], seen["unauthorized"]) == (
        0,
        0,
        0,
        0,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--key", "studio", "--model", "doubao-seedance-2-0-720p", "--upscale", "4k"],
      "--upscale: key 'studio' is a relaydance key"),
     (["--key", "studio", "--model", "doubao-seedance-2-0-720p", "--mode", "reference"],
      "--mode: key 'studio' is a relaydance key"),
     (["--key", "kin", "--model", "seedance-20", "--generate-audio"],
      "--generate-audio: key 'kin' is a kinovi key"),
     (["--key", "kin", "--model", "seedance-20", "--image", "/tmp/cat.png"],
      "Kinovi has no upload endpoint"),
     (["--key", "kin", "--model", "seedance-20", "--seconds", "20"], "use 4 to 15"),
     (["--key", "nobody", "--model", "seedance-20"], "the alias given is not configured")],
)  # fmt: skip
def test_the_cli_refuses_what_the_aliass_provider_does_not_take_with_exit_2(
    env: dict[str, str], sim: SimulatorProcess, args: list[str], words: str
) -> None:
    result = CliRunner().invoke(main, ["render", "--prompt", "a clip", *args])
    assert result.exit_code == 2, result.output
    assert words in result.stderr
    assert sim.stats()["submissions"] == 0
    assert get_engine().store.counts() == {}


def test_the_dry_run_shows_kinovis_estimate_with_the_upscale(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["render", "--key", "kin", "--model", "seedance2-fast", "--prompt", "p",
               "--seconds", "10", "--upscale", "4K", "--dry-run", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["body"]["inputs"]["upscaleResolution"] == "4k"
    assert out["estimated_cost_usd"] == pytest.approx((28 + 28) * 10 * 0.005)
