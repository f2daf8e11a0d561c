"""Memory, throughput and CPU of a large clip's delivery: to local disk and into S3.

    .venv/bin/python bench/bench_download.py [--size-mb 512] [--chunk-kb 64] [--repeat 3]
                                             [--storage both|local|s3]

A child process serves an mp4-looking body (an ftyp box, then zeros, generated on the
fly) on 127.0.0.1. This process delivers it the way the worker's download step does: the
download (``stream_video``) streams into the sink the storage opens, then commits it:
``LocalStorage`` (a temp file, fsync, rename) and ``S3Storage`` (a streaming multipart
upload into moto's S3 server, started here on loopback as a second child process). A thread samples this process's RSS every 10 ms.

Per run: MB/s, peak RSS growth over the level just before the delivery (targets: under
32 MB to disk, under 64 MB into S3, i.e. memory stays flat whatever the clip's size) and
this process's CPU time (user + system, all threads) per MB. Medians of ``--repeat``
runs are printed as a Markdown table and written to bench/results/download.json.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.infra.redis_server import free_port  # noqa: E402
from worker.provider.download import make_download_client, stream_video  # noqa: E402
from worker.storage import LocalStorage, Storage, StoredClip  # noqa: E402

MIB = 1 << 20
TARGET_GROWTH_MB = {"local": 32.0, "s3": 64.0}
FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
BUCKET = "bench"


def body_chunks(size: int, piece: int = MIB):
    """The served body: the ftyp box, then zeros, ``piece`` bytes at a time."""
    zeros = bytes(piece)
    yield FTYP
    left = size - len(FTYP)
    while left > 0:
        n = min(piece, left)
        yield zeros if n == piece else zeros[:n]
        left -= n


def serve(size: int, rate_mb_s: float) -> None:
    """Child process: serve ``size`` bytes (4 MiB under /warmup) until stdin closes, at
    ``rate_mb_s`` MB/s when it is above 0 (a provider link slower than loopback)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            n = 4 * MIB if self.path.startswith("/warmup") else size
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            started, sent = time.monotonic(), 0
            try:
                for chunk in body_chunks(n):
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if rate_mb_s > 0:
                        ahead = sent / (rate_mb_s * MIB) - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # the parent closes stdin (or dies) to stop us
    server.shutdown()


class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds; keeps the peak."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in body_chunks(size):
        digest.update(chunk)
    return digest.hexdigest()


class MotoServer:
    """moto's S3 server on a free loopback port (a child process), with one bucket."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/moto-api/data.json", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
            AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent",
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        )  # fmt: skip

    def storage(self, part_size: int) -> Storage:
        from worker.storage.s3 import S3Storage

        storage = S3Storage(bucket=BUCKET, prefix="clips", endpoint_url=self.url,
                            region="us-east-1", part_size=part_size)  # fmt: skip
        storage.client.create_bucket(Bucket=BUCKET)
        return storage

    def reset(self) -> None:
        # Drop the stored objects between runs: moto keeps them in its own memory.
        httpx.post(f"{self.url}/moto-api/reset", timeout=30).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def deliver(storage: Storage, url: str, name: str, **options: Any) -> StoredClip:
    """Stream ``url`` into the storage's sink for ``name`` and commit it, as the job does."""
    with storage.open_clip(name) as sink:
        got = stream_video(url, sink, **options)
        return sink.commit(sha256=got.sha256, seconds=got.seconds)


def deliver_once(storage: Storage, url: str, size: int, chunk_kb: int) -> dict[str, Any]:
    """One measured delivery of ``url``; the storage is warm (imports, pools, client)."""
    with make_download_client(connect_timeout=5, read_timeout=60) as client:
        options: dict[str, Any] = {"client": client, "max_bytes": size + 1,
                                   "allow_local": True, "overall_timeout": 900.0}  # fmt: skip
        deliver(storage, url.replace("/clip.mp4", "/warmup"), "warmup", **options)
        proc = psutil.Process()
        baseline = proc.memory_info().rss
        sampler = RssSampler()
        sampler.start()
        cpu_before = proc.cpu_times()
        started = time.perf_counter()
        clip = deliver(storage, url, "big", **options)
        wall = time.perf_counter() - started
        cpu_after = proc.cpu_times()
        sampler.stop()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    size_mb = size / MIB
    return {
        "seconds": wall,
        "throughput_mb_s": size_mb / wall,
        "baseline_rss_mb": baseline / MIB,
        "peak_rss_growth_mb": (sampler.peak - baseline) / MIB,
        "cpu_ms_per_mb": 1000 * cpu / size_mb,
        "content_verified": clip.size == size and clip.sha256 == expected_sha256(size),
        "rss_samples": sampler.samples,
    }


def _summary(
    runs: list[dict[str, Any]], *, kind: str, size_mb: int, chunk_kb: int, part_mb: int,
    source_mb_s: float, repeat: int,
) -> dict[str, Any]:  # fmt: skip
    """The medians of the runs, the worst memory growth and the verdict on its target."""

    def median(name: str) -> float:
        return round(statistics.median(r[name] for r in runs), 2)

    growth = median("peak_rss_growth_mb")
    return {
        "storage": kind,
        "size_mb": size_mb,
        "chunk_kb": chunk_kb,
        "part_mb": part_mb if kind == "s3" else None,
        "source_mb_s": source_mb_s or None,
        "runs": repeat,
        "seconds": median("seconds"),
        "throughput_mb_s": median("throughput_mb_s"),
        "baseline_rss_mb": median("baseline_rss_mb"),
        "peak_rss_growth_mb": growth,
        "peak_rss_growth_max_mb": round(max(r["peak_rss_growth_mb"] for r in runs), 2),
        "cpu_ms_per_mb": median("cpu_ms_per_mb"),
        "target_growth_mb": TARGET_GROWTH_MB[kind],
        "within_target": growth < TARGET_GROWTH_MB[kind],
        "content_verified": all(r["content_verified"] for r in runs),
    }


def run(kind: str, size_mb: int, chunk_kb: int, repeat: int, dest_root: str | None,
        part_mb: int, source_mb_s: float) -> dict[str, Any]:  # fmt: skip
    size = size_mb * MIB
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(size),
                              "--source-mb-s", str(source_mb_s)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    dest = Path(tempfile.mkdtemp(prefix="bench-download-", dir=dest_root))
    moto = MotoServer() if kind == "s3" else None
    runs = []
    try:
        assert child.stdout is not None
        url = f"http://127.0.0.1:{int(child.stdout.readline())}/clip.mp4?sig=bench"
        for _ in range(repeat):
            if moto is not None:
                moto.reset()
                storage = moto.storage(part_mb * MIB)
            else:
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir()
                storage = LocalStorage(dest)
            try:
                runs.append(deliver_once(storage, url, size, chunk_kb))
            finally:
                storage.close()
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=10)
        if moto is not None:
            moto.stop()
        shutil.rmtree(dest, ignore_errors=True)

    return _summary(runs, kind=kind, size_mb=size_mb, chunk_kb=chunk_kb, part_mb=part_mb,
                    source_mb_s=source_mb_s, repeat=repeat)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--chunk-kb", type=int, default=64)
    parser.add_argument("--part-mb", type=int, default=8, help="S3 multipart part size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--storage", choices=["both", "local", "s3"], default="both")
    parser.add_argument(
        "--source-mb-s",
        type=float,
        default=0.0,
        help="serve the clip at this rate (0: as fast as loopback allows)",
    )
    parser.add_argument("--dest-dir", default=None, help="where the local temp download goes")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.source_mb_s)
        return
    kinds = ["local", "s3"] if args.storage == "both" else [args.storage]
    rows = [run(k, args.size_mb, args.chunk_kb, args.repeat, args.dest_dir, args.part_mb,
                args.source_mb_s) for k in kinds]  # fmt: skip
    print(f"medians of {args.repeat} runs\n")
    print("| storage | size | MB/s | peak RSS growth | target | CPU ms/MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r["within_target"] else "NO"
        print(f"| {r['storage']} | {r['size_mb']} MB | {r['throughput_mb_s']} "
              f"| {r['peak_rss_growth_mb']} MB (max {r['peak_rss_growth_max_mb']}) "
              f"| < {r['target_growth_mb']:g} MB: {ok} | {r['cpu_ms_per_mb']} |")  # fmt: skip
    by_kind = {r["storage"]: r for r in rows}
    figures: dict[str, Any] = {"runs": rows}
    if {"local", "s3"} <= set(by_kind):
        ratio = by_kind["s3"]["cpu_ms_per_mb"] / by_kind["local"]["cpu_ms_per_mb"]
        figures["s3_cpu_per_mb_vs_local"] = round(ratio, 2)
        print(f"\nCPU per MB, S3 / local disk: {ratio:.2f}x")
    print(f"content verified (size, sha256): {all(r['content_verified'] for r in rows)}")
    figures.update(
        python=platform.python_version(),
        machine=f"{platform.system()} {platform.machine()}, {psutil.cpu_count()} cpu",
        command=f"bench/bench_download.py --size-mb {args.size_mb} --chunk-kb {args.chunk_kb} "
        f"--part-mb {args.part_mb} --repeat {args.repeat} --storage {args.storage}"
        + (f" --source-mb-s {args.source_mb_s:g}" if args.source_mb_s else ""),
    )
    out = ROOT / "bench" / "results" / "download.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
