"""Fakes for the provider client's tests: a recording handler and canned answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr

KEY_VALUE = "sk-live-7f3a9c2e5b1d4e6f8a0b"
KEY = SecretStr(KEY_VALUE)
BASE = "https://relaydance.test/v1"
SIGNED = "https://cdn.relaydance.test/out/clip.mp4?X-Signature=deadbeefcafe&Expires=99"
BODY = {
    "model": "doubao-seedance-2-0-1080p",
    "prompt": "A dancer spins in golden hour light, cinematic",
    "seconds": "10",
    "metadata": {"ratio": "16:9", "resolution": "1080p", "generate_audio": True},
}
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers with ``respond`` and keeps every request."""

    def __init__(self, respond: Handler) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.read())
        self.requests.append(request)
        return self.respond(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def answer(status: int = 200, payload: Any = None, **kwargs: Any) -> Handler:
    def respond(request: httpx.Request) -> httpx.Response:
        if payload is None:
            return httpx.Response(status, **kwargs)
        return httpx.Response(status, json=payload, **kwargs)

    return respond
