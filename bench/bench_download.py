"""Memory and throughput of download_video on a large clip over loopback HTTP.

    .venv/bin/python bench/bench_download.py [--size-mb 512] [--chunk-kb 64]

A child process serves an mp4-looking body (an ftyp box, then zeros, generated on the
fly) on 127.0.0.1; this process downloads it with ``download_video`` while a thread
samples its own RSS every 10 ms. Reports peak RSS growth over the level just before
the download (target: under 32 MB, i.e. memory stays flat) and throughput, prints a
Markdown table and writes bench/results/download.json.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.download import download_video, make_download_client  # noqa: E402

MIB = 1 << 20
TARGET_GROWTH_MB = 32.0
FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def body_chunks(size: int, piece: int = MIB):
    """The served body: the ftyp box, then zeros, ``piece`` bytes at a time."""
    zeros = bytes(piece)
    yield FTYP
    left = size - len(FTYP)
    while left > 0:
        n = min(piece, left)
        yield zeros if n == piece else zeros[:n]
        left -= n


def serve(size: int) -> None:
    """Child process: serve ``size`` bytes (4 MiB under /warmup) until stdin closes."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            n = 4 * MIB if self.path.startswith("/warmup") else size
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            try:
                for chunk in body_chunks(n):
                    self.wfile.write(chunk)
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


def run(size_mb: int, chunk_kb: int, dest_root: str | None) -> dict[str, object]:
    size = size_mb * MIB
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    dest = Path(tempfile.mkdtemp(prefix="bench-download-", dir=dest_root))
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        url = f"http://127.0.0.1:{port}/clip.mp4?sig=bench"
        options = {
            "dest_dir": dest,
            "client": None,
            "max_bytes": size + 1,
            "allow_local": True,
            "overall_timeout": 600.0,
            "chunk_size": chunk_kb * 1024,
        }
        with make_download_client(connect_timeout=5, read_timeout=30) as client:
            options["client"] = client
            # Warm-up: imports, the connection pool and first buffers are not per-byte costs.
            download_video(url.replace("/clip.mp4", "/warmup"), name="warmup", **options)  # type: ignore[arg-type]
            (dest / "warmup.mp4").unlink()
            proc = psutil.Process()
            baseline = proc.memory_info().rss
            sampler = RssSampler()
            sampler.start()
            started = time.perf_counter()
            result = download_video(url, name="big", **options)  # type: ignore[arg-type]
            wall = time.perf_counter() - started
            sampler.stop()
        ok = result.size == size and result.sha256 == expected_sha256(size)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=10)
        shutil.rmtree(dest, ignore_errors=True)
    growth_mb = (sampler.peak - baseline) / MIB
    return {
        "size_mb": size_mb,
        "chunk_kb": chunk_kb,
        "seconds": round(wall, 3),
        "throughput_mb_s": round(size_mb / wall, 1),
        "baseline_rss_mb": round(baseline / MIB, 1),
        "peak_rss_mb": round(sampler.peak / MIB, 1),
        "peak_rss_growth_mb": round(growth_mb, 1),
        "rss_samples": sampler.samples,
        "target_growth_mb": TARGET_GROWTH_MB,
        "within_target": growth_mb < TARGET_GROWTH_MB,
        "content_verified": ok,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {psutil.cpu_count()} cpu",
        "command": f"bench/bench_download.py --size-mb {size_mb} --chunk-kb {chunk_kb}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--chunk-kb", type=int, default=64)
    parser.add_argument("--dest-dir", default=None, help="where the temp download goes")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    figures = run(args.size_mb, args.chunk_kb, args.dest_dir)
    print("| size | chunk | seconds | MB/s | RSS before | peak RSS | peak growth | target |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {figures['size_mb']} MB | {figures['chunk_kb']} KB | {figures['seconds']} "
        f"| {figures['throughput_mb_s']} | {figures['baseline_rss_mb']} MB "
        f"| {figures['peak_rss_mb']} MB | {figures['peak_rss_growth_mb']} MB "
        f"| < {TARGET_GROWTH_MB:g} MB: {'yes' if figures['within_target'] else 'NO'} |"
    )
    print(f"\ncontent verified (size, sha256): {figures['content_verified']}")
    out = ROOT / "bench" / "results" / "download.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
