"""Run the simulator under uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from simulator.app import create_app
from simulator.config import SimConfig
from simulator.faults import quiet_dropped_replies

__all__ = ["serve"]

logger = logging.getLogger(__name__)


def serve(*, host: str, port: int, config: SimConfig, log_level: str = "warning") -> None:
    """Serve the simulator on ``host:port`` until interrupted (uvloop/httptools when present)."""
    logger.info("RelayDance simulator on http://%s:%d/v1", host, port)
    quiet_dropped_replies()
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        backlog=4096,  # load tests open hundreds of connections at once
        timeout_keep_alive=30,
    )
