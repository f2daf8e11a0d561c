"""What the in-process simulator tests send: content items and a submit with its idempotency key."""

from __future__ import annotations

from typing import Any

import httpx

from tests.simulator_requests import BASIC, SUBMIT

Client = httpx.AsyncClient
OTHER_KEY = "sk-other-key-0002"


def image(url: str = "https://example.com/a.jpg", role: str = "reference_image") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}, "role": role}


def video(url: str = "https://example.com/a.mp4") -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url}, "role": "reference_video"}


def audio(url: str = "https://example.com/a.mp3") -> dict[str, Any]:
    return {"type": "audio_url", "audio_url": {"url": url}, "role": "reference_audio"}


async def submit(client: Client, body: Any = None, *, idem: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": idem} if idem else {}
    return await client.post(SUBMIT, json=BASIC if body is None else body, headers=headers)
