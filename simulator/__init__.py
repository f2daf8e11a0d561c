"""A local RelayDance and Kinovi: submit, poll, files, images, webhooks and mp4 downloads,
with faults, in either provider's dialect (or both at once).

``create_app()`` gives the Starlette app, ``serve()`` runs it under uvicorn, and
``python -m simulator`` does the same from a shell. ``/_sim/stats`` counts what it saw.
"""

from __future__ import annotations

from simulator.app import create_app
from simulator.config import SimConfig, SimConfigError
from simulator.media import (
    PNG_BYTES,
    VIDEO_SHA256,
    iter_video,
    movie_duration,
    video_bytes,
    video_sha256,
    video_size,
)
from simulator.server import serve
from simulator.stills import image_png, image_sha256, png_size

__all__ = [
    "PNG_BYTES",
    "VIDEO_SHA256",
    "SimConfig",
    "SimConfigError",
    "create_app",
    "image_png",
    "image_sha256",
    "iter_video",
    "movie_duration",
    "png_size",
    "serve",
    "video_bytes",
    "video_sha256",
    "video_size",
]
