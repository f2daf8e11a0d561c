"""Local media at enqueue: the producer refuses what the worker would, wherever it runs.

The CLI and ``tasks.enqueue_render`` check local files against ``RELAYDANCE_MEDIA_DIRS``
alone, never against their own working directory, so a file the worker's upload step would
refuse (``file_refused``, after the job was recorded) is refused before anything is written.
Real redis-server; no worker (nothing must reach one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from simulator import PNG_BYTES
from tests.fleet import point_this_process_at
from worker.cli.main import main
from worker.errors import InvalidRequest
from worker.job.engine import get_engine
from worker.render.local_media import allowed_dirs, open_media

MODEL = "doubao-seedance-2-0-fast-260128"


@pytest.fixture
def shoot(tmp_path: Path) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    (folder / "cat.png").write_bytes(PNG_BYTES)
    return folder


def env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "RELAYDANCE_API_KEY": "sk-test-media",
            "RELAYDANCE_OUTPUT_DIR": str(tmp_path / "renders"), **extra}  # fmt: skip


def render(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["render", "--model", MODEL, "--prompt",
                                       "@image1 turns its head", *args])  # fmt: skip
    return result.exit_code, result.output


def test_a_file_in_the_working_directory_is_refused_at_enqueue_when_no_dir_allows_it(
    redis_url: str, tmp_path: Path, shoot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_this_process_at(env(redis_url, tmp_path), monkeypatch)  # RELAYDANCE_MEDIA_DIRS unset
    monkeypatch.chdir(shoot)
    code, output = render("--image", "cat.png")
    assert code == 2, output
    assert "images: local file 'cat.png' cannot be used" in output
    assert "RELAYDANCE_MEDIA_DIRS is unset" in output
    from tasks import enqueue_render

    with pytest.raises(InvalidRequest) as refused:
        enqueue_render({"model": MODEL, "prompt": "@image1", "images": ["cat.png"]})
    assert refused.value.problems[0][0] == "images"
    assert "RELAYDANCE_MEDIA_DIRS" in refused.value.problems[0][1]
    assert not redis.Redis.from_url(redis_url).keys("rd:job:*")


def test_a_file_outside_the_shared_list_is_refused_from_any_directory(
    redis_url: str, tmp_path: Path, shoot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "media"
    other.mkdir()
    point_this_process_at(env(redis_url, tmp_path, RELAYDANCE_MEDIA_DIRS=str(other)),
                          monkeypatch)  # fmt: skip
    monkeypatch.chdir(shoot)  # the working directory grants nothing
    code, output = render("--image", "cat.png")
    assert code == 2 and "is outside the directories media may come from" in output
    assert str(other.resolve()) in output and "RELAYDANCE_MEDIA_DIRS" in output
    assert not redis.Redis.from_url(redis_url).keys("rd:job:*")


def test_what_the_producer_accepts_the_worker_opens_from_its_own_directory(
    redis_url: str, tmp_path: Path, shoot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_this_process_at(env(redis_url, tmp_path, RELAYDANCE_MEDIA_DIRS=str(shoot)),
                          monkeypatch)  # fmt: skip
    monkeypatch.chdir(shoot)
    code, output = render("--image", "cat.png")
    assert code == 0, output
    job = get_engine().store.get(output.strip())
    assert job is not None
    path = job.request["images"][0]
    assert path == str((shoot / "cat.png").resolve())
    monkeypatch.chdir(tmp_path)  # the worker runs elsewhere, with the same settings
    handle, mime = open_media(path, "image", allowed_dirs(get_engine().settings))
    handle.close()
    assert mime == "image/png"
