"""Output storage without an S3 server: the local directory, the output setting that picks a
directory or a bucket (and names the fix when it is wrong), and an S3 endpoint that does not
answer.

A bucket on a real S3-compatible server (moto) is in tests/integration/test_storage.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from config.settings import SettingsError, load_settings
from tests.clip_server import MIB, ClipServer, mp4, save
from tests.s3_server import REGION
from worker.errors import (
    StorageRefused,
    StorageUnavailable,
)
from worker.infra.redis_server import free_port
from worker.storage import LocalStorage, make_storage
from worker.storage.modes import process_umask
from worker.storage.s3 import S3Storage


def test_an_endpoint_that_does_not_answer_is_unavailable_not_refused(
    clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(1 * MIB)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    storage = S3Storage(bucket="clips", endpoint_url=f"http://127.0.0.1:{free_port()}",
                        region=REGION, connect_timeout=1, read_timeout=1)  # fmt: skip
    with pytest.raises(StorageUnavailable):
        save(storage, clips.url, http_client)


def test_local_storage_keeps_todays_path_and_adds_a_file_uri(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body = mp4(300_000)
    clip = save(LocalStorage(tmp_path), clips.url, http_client)
    assert clip.path == tmp_path / "rdj_job1.mp4"
    assert clip.uri == (tmp_path / "rdj_job1.mp4").resolve().as_uri()
    assert clip.record_fields()["output_path"] == str((tmp_path / "rdj_job1.mp4").resolve())
    assert "etag" not in clip.record_fields()


def test_local_check_writes_and_removes_a_probe_and_refuses_a_path_under_a_file(
    tmp_path: Path,
) -> None:
    assert "probe" in LocalStorage(tmp_path / "new").check()
    assert list((tmp_path / "new").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageRefused, match="cannot write to"):
        LocalStorage(tmp_path / "file" / "renders").check()


def test_the_local_default_works_without_boto3_installed(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None\n"
        "from config.settings import load_settings\n"
        "from worker.storage import check_output, make_storage\n"
        f"s = load_settings(output_dir={str(tmp_path)!r})\n"
        "print(type(make_storage(s)).__name__, check_output(s))\n"
        "try:\n"
        "    make_storage(load_settings(output='s3://clips/x'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYDANCE_", "AWS_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parents[2], check=True).stdout  # fmt: skip
    assert out.startswith("LocalStorage ")
    assert "SettingsError RELAYDANCE_OUTPUT names a bucket, but boto3 is not installed" in out
    assert "pip install 'relaydance-worker[s3]'" in out


def test_output_is_a_directory_or_an_s3_url_and_either_variable_name_sets_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RELAYDANCE_OUTPUT", "s3://clips/renders/2025/")
    assert load_settings().output_bucket() == ("clips", "renders/2025")
    monkeypatch.delenv("RELAYDANCE_OUTPUT")
    monkeypatch.setenv("RELAYDANCE_OUTPUT_URL", "s3://clips")
    assert load_settings().output_bucket() == ("clips", "")
    monkeypatch.setenv("RELAYDANCE_OUTPUT_URL", str(tmp_path))
    settings = load_settings()
    assert settings.output_bucket() is None and settings.output_dir == tmp_path
    assert isinstance(make_storage(settings), LocalStorage)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("gs://clips/renders", "must be a local directory or s3://bucket/prefix"),
        ("s3://Clips_Bucket/x", "is not a valid S3 bucket name"),
        ("s3://clips/a//b", "plain path segments"),
    ],
)
def test_a_bad_output_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("RELAYDANCE_OUTPUT", value)
    with pytest.raises(SettingsError, match="RELAYDANCE_OUTPUT: ") as caught:
        load_settings()
    assert says in str(caught.value)


def test_a_local_output_that_contradicts_output_dir_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RELAYDANCE_OUTPUT", str(tmp_path / "a"))
    monkeypatch.setenv("RELAYDANCE_OUTPUT_DIR", str(tmp_path / "b"))
    with pytest.raises(SettingsError, match="set only one of them"):
        load_settings()


def test_the_manifest_json_written_locally_is_unchanged_in_form(tmp_path: Path) -> None:
    uri = LocalStorage(tmp_path).save_manifest("rdj_job1", {"b": 1, "a": 2})
    assert uri == (tmp_path / "rdj_job1.json").resolve().as_uri()
    assert json.loads((tmp_path / "rdj_job1.json").read_text()) == {"a": 2, "b": 1}


# Permissions: what cp would give a new file, or RELAYDANCE_OUTPUT_MODE ------------------------


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set this process's umask for the test; the original comes back after it."""
    original = os.umask(0o022)
    os.umask(original)
    yield lambda value: os.umask(value) and None
    os.umask(original)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_clips_and_manifests_honour_the_umask_as_cp_does(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path,
    umask: Callable[[int], None], mask: int, expected: int,
) -> None:  # fmt: skip
    umask(mask)
    assert process_umask() == mask
    clips.body = mp4(100_000)
    storage = LocalStorage(tmp_path)
    clip = save(storage, clips.url, http_client)
    storage.save_manifest("rdj_job1", {"job_id": "rdj_job1"})
    assert clip.path is not None
    assert mode_of(clip.path) == expected
    assert mode_of(tmp_path / "rdj_job1.json") == expected


def test_output_mode_overrides_the_umask_and_directories_get_search_bits(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path,
    umask: Callable[[int], None], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    umask(0o077)
    monkeypatch.setenv("RELAYDANCE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("RELAYDANCE_OUTPUT_MODE", "640")
    storage = make_storage(load_settings())
    clips.body = mp4(100_000)
    clip = save(storage, clips.url, http_client, name="shoot/0001-a-boat")
    storage.save_manifest("shoot/0001-a-boat", {"a": 1})
    assert clip.path == tmp_path / "shoot" / "0001-a-boat.mp4"
    assert mode_of(clip.path) == 0o640
    assert mode_of(tmp_path / "shoot" / "0001-a-boat.json") == 0o640
    assert mode_of(tmp_path / "shoot") == 0o750


@pytest.mark.parametrize(
    ("value", "says"), [("rw-r--r--", "not an octal file mode"), ("0044", "owner's rw"),
                        ("1777", "not an octal file mode")],
)  # fmt: skip
def test_a_bad_output_mode_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("RELAYDANCE_OUTPUT_MODE", value)
    with pytest.raises(SettingsError, match="RELAYDANCE_OUTPUT_MODE: ") as caught:
        load_settings()
    assert says in str(caught.value)


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", ".hidden/x", "a//b",
                                  "a\\b", "a\x00b"])  # fmt: skip
def test_a_name_that_would_leave_the_output_directory_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StorageRefused, match="output name"):
        LocalStorage(tmp_path / "out").save_manifest(name, {"a": 1})
    assert not (tmp_path / "escape.json").exists()


def test_a_linked_subdirectory_that_leads_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "shoot").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageRefused, match="leads out of"):
        LocalStorage(tmp_path / "out").save_manifest("shoot/0001", {"a": 1})
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_stored_file_is_read_back_by_its_uri_and_nothing_outside_the_directory_is(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path / "renders")
    sink = storage.open_image("shoot/still", extension="png", content_type="image/png")
    sink.write(b"\x89PNG\r\n\x1a\n still bytes")
    stored = sink.commit(sha256="-", seconds=0.0)
    assert storage.read(stored.uri, max_bytes=1024) == b"\x89PNG\r\n\x1a\n still bytes"
    with pytest.raises(StorageRefused, match="is over 8 bytes"):
        storage.read(stored.uri, max_bytes=8)
    outside = tmp_path / "secret.txt"
    outside.write_text("not a still")
    for uri in (outside.as_uri(), f"{stored.uri}/../../../secret.txt", "s3://clips/x.png"):
        with pytest.raises(StorageRefused, match="is not a file stored under"):
            storage.read(uri, max_bytes=1024)
    Path(stored.path or "").unlink()
    with pytest.raises(StorageRefused, match="cannot read"):
        storage.read(stored.uri, max_bytes=1024)
