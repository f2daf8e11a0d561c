"""The hostile-input tests' world: a real Redis, the simulator, a media directory, and the entry points each attack goes through."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from simulator.testing import SimulatorProcess
from tests.fleet import point_this_process_at
from worker.batch import InvalidBatch
from worker.cli.main import main
from worker.errors import InvalidRequest

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
