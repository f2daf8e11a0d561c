"""The sink a local directory hands out: bytes written to a temp file, shown under the final
name only by a commit, discarded otherwise; a killed write's temp file cleared by the next
open of the name. The storage knows no HTTP: most tests here write bytes by hand, and the
ones that stream a URL do it as the job's step does (tests/clip_server.py).

The bucket's sinks are in tests/integration/test_storage.py.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.clip_server import MIB, ClipServer, mp4, save
from worker.errors import DownloadRejected, StorageUnavailable, TransportFailure
from worker.storage import LocalStorage, Sink
from worker.storage.files import cleanup_partials
from worker.storage.s3 import MAX_PARTS, S3Storage
from worker.storage.sink import SinkClosed

BODY = mp4(200_000)
SHA = hashlib.sha256(BODY).hexdigest()


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_committed_sink_shows_the_clip_under_its_name_and_nothing_else(tmp_path: Path) -> None:
    with LocalStorage(tmp_path, mode=0o640).open_clip("rdj_job1") as sink:
        for at in range(0, len(BODY), 65536):
            sink.write(BODY[at : at + 65536])
        assert names(tmp_path)[0].startswith(".rdj_job1.")  # only a temp file so far
        assert not (tmp_path / "rdj_job1.mp4").exists()
        clip = sink.commit(sha256=SHA, seconds=0.5)
    assert names(tmp_path) == ["rdj_job1.mp4"]
    assert (tmp_path / "rdj_job1.mp4").read_bytes() == BODY
    assert (clip.size, clip.sha256, clip.seconds) == (len(BODY), SHA, 0.5)
    assert clip.path == tmp_path / "rdj_job1.mp4" and clip.content_type == "video/mp4"


def test_the_temp_file_is_private_until_the_commit_gives_the_clip_its_mode(
    tmp_path: Path,
) -> None:
    sink = LocalStorage(tmp_path, mode=0o644).open_clip("rdj_job1")
    sink.write(BODY)
    (temp,) = tmp_path.iterdir()
    assert stat.S_IMODE(temp.stat().st_mode) == 0o600  # nobody reads half a clip
    clip = sink.commit(sha256=SHA, seconds=0.1)
    assert clip.path is not None and stat.S_IMODE(clip.path.stat().st_mode) == 0o644


@pytest.mark.parametrize("how", ["exception", "no-commit", "abort"])
def test_a_sink_not_committed_leaves_nothing_and_keeps_the_clip_already_there(
    tmp_path: Path, how: str
) -> None:
    (tmp_path / "rdj_job1.mp4").write_bytes(b"the earlier, whole clip")
    storage = LocalStorage(tmp_path)

    def deliver() -> None:
        with storage.open_clip("rdj_job1") as sink:
            sink.write(BODY)
            if how == "exception":
                raise KeyError("the download failed")
            if how == "abort":
                sink.abort()

    if how == "exception":
        with pytest.raises(KeyError):
            deliver()
    else:
        deliver()
    assert names(tmp_path) == ["rdj_job1.mp4"]
    assert (tmp_path / "rdj_job1.mp4").read_bytes() == b"the earlier, whole clip"


def test_a_sink_takes_no_bytes_and_no_second_commit_once_it_is_finished(tmp_path: Path) -> None:
    sink = LocalStorage(tmp_path).open_clip("rdj_job1")
    sink.write(BODY)
    sink.commit(sha256=SHA, seconds=0.1)
    with pytest.raises(SinkClosed):
        sink.write(b"more")
    with pytest.raises(SinkClosed):
        sink.commit(sha256=SHA, seconds=0.1)
    sink.abort()  # after a commit: nothing to do, the clip stays
    assert (tmp_path / "rdj_job1.mp4").read_bytes() == BODY


def test_a_full_disk_is_a_storage_outage_that_leaves_nothing(tmp_path: Path) -> None:
    sink = LocalStorage(tmp_path).open_clip("rdj_job1")
    sink.temp.handle.close()  # type: ignore[attr-defined]
    sink.temp.handle = open("/dev/full", "wb")  # type: ignore[attr-defined]
    with sink:
        with pytest.raises(StorageUnavailable, match="free space"):
            sink.write(bytes(1 << 16))  # larger than the buffer: written at once, refused
    assert names(tmp_path) == []


@pytest.mark.parametrize(
    ("body", "cut", "cap", "error"),
    [(b"\x00\x00\x00\x18moov" + bytes(MIB), None, 64 * MIB, DownloadRejected),
     (mp4(3 * MIB), None, 2 * MIB, DownloadRejected),
     (mp4(3 * MIB), MIB, 64 * MIB, TransportFailure)],
    ids=["not-an-mp4", "over-the-cap", "dropped-mid-body"],
)  # fmt: skip
def test_a_failed_download_into_the_directory_leaves_no_file_and_no_temp_file(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path,
    body: bytes, cut: int | None, cap: int, error: type[Exception],
) -> None:  # fmt: skip
    clips.body, clips.cut = body, cut
    with pytest.raises(error):
        save(LocalStorage(tmp_path), clips.url, http_client, max_bytes=cap)
    assert names(tmp_path) == []


def test_opening_a_name_clears_its_killed_writes_but_not_a_live_one_nor_another_names(
    tmp_path: Path,
) -> None:
    stale = time.time() - 60
    for leftover in (".rdj_job1.a1b2.part", ".rdj_job1.zz9.json.part", ".rdj_job10.a1b2.part"):
        (tmp_path / leftover).write_bytes(b"half a file")
        os.utime(tmp_path / leftover, (stale, stale))
    (tmp_path / ".rdj_job1.live.part").write_bytes(b"bytes arriving right now")
    with LocalStorage(tmp_path).open_clip("rdj_job1") as sink:
        sink.write(BODY)
        sink.commit(sha256=SHA, seconds=0.1)
    assert names(tmp_path) == [".rdj_job1.live.part", ".rdj_job10.a1b2.part", "rdj_job1.mp4"]
    assert cleanup_partials(tmp_path, "rdj_job1") == 1  # untouched for any time: the live one


def test_a_still_is_written_under_its_own_extension_and_type(tmp_path: Path) -> None:
    sink: Sink = LocalStorage(tmp_path).open_image("shoot/0001", extension="webp",
                                                   content_type="image/webp")  # fmt: skip
    with sink:
        sink.write(b"RIFF....WEBP")
        still = sink.commit(sha256="x", seconds=0.0)
    assert still.path == tmp_path / "shoot" / "0001.webp" and still.content_type == "image/webp"
    assert still.size == 12


def test_a_bucket_clip_at_the_cap_fits_in_s3s_parts() -> None:
    small = S3Storage(bucket="clips", part_size=8 * MIB, max_clip_bytes=1 << 30)
    assert small.clip_part_size() == 8 * MIB
    huge = S3Storage(bucket="clips", part_size=8 * MIB, max_clip_bytes=200 << 30)
    assert huge.clip_part_size() * MAX_PARTS >= 200 << 30 > 8 * MIB * MAX_PARTS
