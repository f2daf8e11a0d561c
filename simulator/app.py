"""Assemble the simulator's Starlette app: ``/v1`` (RelayDance), ``/api/v1`` (Kinovi),
``/_files`` and ``/_sim``. Both providers are served at once unless the ``dialect`` knob
names one."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from simulator import admin, api, files, images, kinovi
from simulator.config import SimConfig
from simulator.core import Simulator

__all__ = ["create_app"]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return api.error(exc.status_code, str(exc.detail), kind=kind)


def create_app(
    config: SimConfig | None = None, *, clock: Callable[[], float] | None = None
) -> Starlette:
    """A fresh simulator app; ``clock`` (epoch seconds) may be faked by in-process tests."""
    sim = Simulator(config or SimConfig(), clock=clock or time.time)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sim.webhooks.start()
        try:
            yield
        finally:
            await sim.webhooks.aclose()

    app = Starlette(
        routes=[
            Mount("/v1", routes=[*api.routes(), *images.routes()]),
            Mount("/api/v1", routes=kinovi.routes()),
            Mount("/_files", routes=files.routes()),
            Mount("/_sim", routes=admin.routes()),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.sim = sim
    return app
