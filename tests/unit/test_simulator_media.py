"""The simulator's mp4 lasts as long as the task asked, in every header a player reads."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterator

import pytest

from simulator import SimConfig, movie_duration, video_bytes, video_sha256
from simulator.testing import InProcessSimulator
from tests.conftest import FakeClock

KEY = "sk-test-media"
SUBMIT = "/v1/video/generations"

pytestmark = pytest.mark.anyio


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of every box between start and end."""
    end = len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        yield kind, start + 8, start + size
        start += size


def _find(data: bytes, path: list[bytes]) -> int:
    start, end = 0, len(data)
    for kind in path:
        start, end = next((s, e) for k, s, e in _boxes(data, start, end) if k == kind)
    return start


def _durations(data: bytes) -> dict[str, float]:
    """Every duration the movie states, in seconds, read by walking the box tree."""
    mvhd = _find(data, [b"moov", b"mvhd"]) + 4  # past version and flags
    timescale, movie = struct.unpack(">II", data[mvhd + 8 : mvhd + 16])
    tkhd = _find(data, [b"moov", b"trak", b"tkhd"]) + 4
    (track,) = struct.unpack(">I", data[tkhd + 16 : tkhd + 20])
    mdhd = _find(data, [b"moov", b"trak", b"mdia", b"mdhd"]) + 4
    media_scale, media = struct.unpack(">II", data[mdhd + 8 : mdhd + 16])
    stts = _find(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"]) + 4
    entries = struct.unpack(">I", data[stts : stts + 4])[0]
    samples = sum(
        count * delta
        for count, delta in struct.iter_unpack(">II", data[stts + 4 : stts + 4 + 8 * entries])
    )
    return {
        "mvhd": movie / timescale,
        "tkhd": track / timescale,
        "mdhd": media / media_scale,
        "samples": samples / media_scale,
    }


@pytest.mark.parametrize("seconds", [4, 5, 12, 15])
def test_every_header_of_the_mp4_states_the_requested_duration(seconds: int) -> None:
    data = video_bytes(seconds)
    assert _durations(data) == dict.fromkeys(("mvhd", "tkhd", "mdhd", "samples"), seconds)
    assert movie_duration(data) == seconds


def test_the_mp4_stays_tiny_and_the_same_size_whatever_its_duration() -> None:
    sizes = {len(video_bytes(seconds)) for seconds in (1, 5, 15, 3600)}
    assert len(sizes) == 1 and sizes.pop() < 2048
    assert video_sha256(5) != video_sha256(6)  # the duration really is in the file


def test_a_clip_of_no_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 0"):
        video_bytes(0)


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[InProcessSimulator]:
    config = SimConfig(seed=7, gen_time_mean=10.0, gen_time_jitter=0.0)
    simulator = InProcessSimulator(config, api_key=KEY, clock=clock)
    yield simulator
    await simulator.__aexit__(None, None, None)


@pytest.mark.parametrize("seconds", [5, 12])
async def test_the_simulator_serves_a_clip_as_long_as_the_task_asked(
    sim: InProcessSimulator, clock: FakeClock, seconds: int
) -> None:
    body = {"model": "doubao-seedance-2-0-fast-260128", "prompt": "a boat", "seconds": str(seconds)}
    task_id = (await sim.client.post(SUBMIT, json=body)).json()["task_id"]
    clock.advance(60)
    url = (await sim.client.get(f"{SUBMIT}/{task_id}")).json()["url"]
    clip = (await sim.client.get(url)).content
    assert movie_duration(clip) == seconds
    assert clip == video_bytes(seconds)
