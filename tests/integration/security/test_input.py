"""Hostile input, one attack a row, each through a real entry point.

Every row drives the producer API (``enqueue_render``, ``enqueue_batch_file``), the
command line (click's runner), a schedule's run or the worker's upload step against a
real redis-server and the simulator over HTTP, and asserts all three: nothing was spent
(no upload, no submission, nothing billed), nothing wrong was written (no job, batch or
broker message; a worker-side refusal fails its job with no uploaded url), and the answer
is the specified one, never repeating the secret the attack carried.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from simulator import PNG_BYTES
from tests.integration.security.hostile import (
    AVIF,
    HEIC,
    HEX_TOKEN,
    KEY,
    MODEL,
    MP3_FRAME,
    SECRET,
    SHORT_KEY,
    UTF16_SECRET,
    World,
    _request,
    assert_nothing_spent,
    everything_stored,
    jsonl,
    via_api,
    via_batch_api,
    via_cli,
    via_cli_render,
)
from worker.cli.main import main
from worker.job.engine import get_engine
from worker.web.metrics import render_metrics

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
