"""The naive design, for comparison only: one task submits, then sleeps and polls until done.

This is the loop of the provider's own example (seed 004) inside a Celery task: the worker
slot is held for the whole generation.
"""

from __future__ import annotations

import time

import httpx

from worker import app


@app.task(name="bench.naive_render")
def naive_render(base_url: str, key: str, body: dict, out: str, interval: float) -> str:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=30) as client:
        task_id = client.post(f"{base_url}/video/generations", json=body, headers=headers).json()[
            "task_id"
        ]
        while True:
            task = client.get(f"{base_url}/video/generations/{task_id}", headers=headers).json()
            if task["status"] == "succeeded":
                break
            if task["status"] == "failed":
                raise RuntimeError(task)
            time.sleep(interval)
        with open(out, "wb") as fh:
            fh.write(client.get(task["url"]).content)
    return out
