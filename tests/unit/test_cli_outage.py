"""The command line during a Redis outage: one plain line naming the Redis and the fix, exit
3 ("cannot tell"), never a traceback and never 1 (which means the job failed); ``--wait``
keeps waiting through an outage and says so; a job nobody takes is said to be untaken.

Redis here is a loopback port nothing listens on: connecting is refused at once, and no
service is started. The same against a real Redis restart is in
tests/integration/test_redis_restart.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from worker.cli import follow
from worker.cli.errors import EXIT_UNKNOWN
from worker.cli.follow import Progress, RideOut, follow_job
from worker.cli.main import main
from worker.infra.redis_server import free_port
from worker.job.record import Job, JobState

JOB = "rdj_" + "0" * 32


@pytest.fixture
def nothing_listens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[int]:
    """REDIS_URL names a loopback port with no server; the CLI runs in an empty directory."""
    port = free_port()
    for name in ("RELAYDANCE_REDIS_URL", "RELAYDANCE_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("RELAYDANCE_API_KEY", "sk-unit-outage")
    monkeypatch.setenv("RELAYDANCE_OUTPUT_DIR", str(tmp_path / "renders"))
    monkeypatch.chdir(tmp_path)
    from tests.fleet import _rebind

    _rebind()
    yield port
    monkeypatch.undo()
    _rebind()


COMMANDS = [
    ["render", "--model", "doubao-seedance-2-0-fast-260128", "--prompt", "a boat"],
    ["render", "--model", "doubao-seedance-2-0-fast-260128", "--prompt", "a boat", "--wait"],
    ["status", JOB],
    ["cancel", JOB],
    ["limits"],
    ["jobs"],
    ["jobs", "--state", "queued", "--json"],
    ["timing"],
    ["resubmit", JOB, "--yes"],
    ["batch", "status", "b_nothing"],
    ["batch", "report", "b_nothing", "--format", "csv"],
    ["schedule", "list"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_says_redis_is_unreachable_with_the_fix_and_exits_3(
    nothing_listens: int, argv: list[str]
) -> None:
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == EXIT_UNKNOWN, result.output
    assert f"error: Redis at 127.0.0.1:{nothing_listens} is unreachable" in result.output
    assert "start it, or set REDIS_URL to the fleet's Redis (db 0, REDIS_URL)" in (result.output)
    assert "Traceback" not in result.output
    assert result.output.count("\n") <= 3  # a line or two, not a stack


def test_doctor_fails_the_redis_line_in_the_same_words_and_skips_what_needs_it(
    nothing_listens: int,
) -> None:
    result = CliRunner().invoke(main, ["doctor"])
    lines = {line.split()[1]: line for line in result.output.splitlines() if line[:4].strip()}
    assert result.exit_code == 1  # doctor's own code: a check failed
    assert lines["redis"].startswith("FAIL")
    assert f"Redis at 127.0.0.1:{nothing_listens} db 0 (REDIS_URL) is unreachable" in lines["redis"]
    assert "start it, or set REDIS_URL" in lines["redis"]
    assert lines["sweep"].startswith("SKIP") and lines["workers"].startswith("SKIP")
    assert "Traceback" not in result.output


def _queued() -> Job:
    return Job(id=JOB, state=JobState.QUEUED, alias="default", created_at=1.0,
               request={"model": "m", "seconds": 5, "prompt": "p"})  # fmt: skip


def test_wait_goes_on_through_an_outage_saying_so_once_and_when_it_ends(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "RETRY_EVERY", 0.0)
    answers: list[object] = [redis.ConnectionError("refused"), redis.ConnectionError("refused"),
                             "done"]  # fmt: skip
    progress = Progress(quiet=False)

    def wait(left: float) -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        ride.back()  # what the progress callback does on the first read that works
        return answer

    ride = RideOut(wait, timeout=60, progress=progress, what=f"job {JOB}")
    assert ride() == "done"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert "is unreachable (ConnectionError: refused)" in err[0]
    assert f"still waiting for job {JOB}, trying again every 0 s" in err[0]
    assert err[1].startswith("Redis answers again after 0 s; following job")


def test_an_outage_that_outlasts_the_timeout_is_raised_for_exit_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(follow, "RETRY_EVERY", 0.01)

    def down(left: float) -> object:
        raise redis.ConnectionError("refused")

    with pytest.raises(redis.ConnectionError):
        RideOut(down, timeout=0.05, progress=Progress(quiet=True), what="job x")()


def test_a_job_nobody_takes_is_said_to_be_untaken_and_the_timeout_exits_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.api

    monkeypatch.setattr(worker.api, "get_job", lambda job_id: _queued())
    monkeypatch.setenv("REDIS_URL", "redis://:pw@127.0.0.1:6390/2")
    from config.settings import get_settings

    get_settings.cache_clear()
    code = follow_job(JOB, timeout=0.6, as_json=True, untaken_after=0.2)
    err = capsys.readouterr().err
    assert code == EXIT_UNKNOWN  # still running, not failed
    assert err.count("no worker has taken this job in 0 s") == 1
    assert "is a worker running against redis://127.0.0.1:6390/2 (REDIS_URL)?" in err
    assert "pw" not in err
    assert f"it may still finish: `relaydance status {JOB}`" in err
