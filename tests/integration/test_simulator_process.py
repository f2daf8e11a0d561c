"""The simulator as a real process: what only real HTTP on a loopback port shows.

A task run to a downloadable mp4 over real sockets, webhooks posted to a real receiver
(retried, duplicated, reordered, dropped, abandoned), the concurrency cap across requests,
and replies dropped or trickled on the wire. Everything else about the simulator is tested
in-process in tests/unit/test_simulator*.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from simulator import VIDEO_SHA256, video_bytes
from simulator.testing import SimulatorProcess
from tests.seed_bodies import KINOVI_TEXT_TO_VIDEO, SEED_004_CURL
from tests.simulator_requests import BASIC, KEY, fp, with_changes

KINOVI_KEY = "kin-test-key-0001"


# A real process, real HTTP, real webhooks -----------------------------------------------


class Receiver:
    """A webhook receiver on a free loopback port that records JSON bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answered in order, then 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status < 300:
                        receiver.bodies.append({"path": self.path, **body})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def process() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(gen_time_mean=0.1, gen_time_jitter=0.0, seed=3) as sim:
        yield sim


@pytest.fixture
def live(process: SimulatorProcess) -> SimulatorProcess:
    process.configure(
        gen_time_mean=0.1, webhook_duplicates=1, webhook_reorder=False, webhook_drop_rate=0.0,
        webhook_retry_base=0.05, failure_rate=0.0, concurrency_cap=0,
    )  # fmt: skip
    process.reset()
    return process


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def wait_for(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Wait, bounded, for ``condition``; the bound is generous, it only stops a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def live_client(sim: SimulatorProcess) -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5)


def submit_with_callback(sim: SimulatorProcess, callback: str) -> str:
    body = with_changes(metadata__callback_url=callback)
    with live_client(sim) as http:
        response = http.post("/video/generations", json=body)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def test_the_process_runs_a_task_to_a_downloadable_mp4_over_real_http(
    live: SimulatorProcess,
) -> None:
    with live_client(live) as http:
        task_id = http.post("/video/generations", json=SEED_004_CURL).json()["task_id"]
        statuses = []

        def done() -> bool:
            statuses.append(http.get(f"/video/generations/{task_id}").json())
            return statuses[-1]["status"] in ("succeeded", "failed")

        wait_for(done)
        assert statuses[-1]["status"] == "succeeded"
        url = statuses[-1]["url"]
        assert url.startswith(f"{live.root}/_files/videos/{task_id}.mp4?")
        data = httpx.get(url).content
    assert data[4:8] == b"ftyp"
    assert hashlib.sha256(data).hexdigest() == VIDEO_SHA256
    stats = live.stats()
    assert stats["downloads"] == 1
    assert stats["submissions_by_key"] == {fp(KEY): 1}


def test_the_final_task_json_is_posted_to_the_callback_url(
    live: SimulatorProcess, receiver: Receiver
) -> None:
    task_id = submit_with_callback(live, receiver.url("/hooks/job-1/token"))
    wait_for(lambda: len(receiver.bodies) == 1)
    hook = receiver.bodies[0]
    assert hook["path"] == "/hooks/job-1/token"
    assert hook["task_id"] == task_id
    assert hook["status"] == "succeeded"
    assert hook["url"].startswith(f"{live.root}/_files/videos/")
    assert httpx.get(hook["url"]).content == video_bytes()
    wait_for(lambda: live.stats()["webhooks_sent"] == 1)


def test_a_failed_task_is_posted_with_its_error(live: SimulatorProcess, receiver: Receiver) -> None:
    live.configure(failure_rate=1.0)
    submit_with_callback(live, receiver.url("/hook"))
    wait_for(lambda: len(receiver.bodies) == 1)
    assert receiver.bodies[0]["status"] == "failed"
    assert receiver.bodies[0]["error"]["message"]


def test_webhook_duplicates_and_reorder_send_copies_then_a_stale_running(
    live: SimulatorProcess, receiver: Receiver
) -> None:
    live.configure(webhook_duplicates=3, webhook_reorder=True)
    task_id = submit_with_callback(live, receiver.url("/hook"))
    wait_for(lambda: len(receiver.bodies) == 4)
    assert {b["task_id"] for b in receiver.bodies} == {task_id}
    statuses = [b["status"] for b in receiver.bodies]
    assert statuses.count("succeeded") == 3
    assert statuses.count("running") == 1
    # The stale one is sent only after the first final copy was delivered.
    assert statuses.index("succeeded") < statuses.index("running")
    wait_for(lambda: live.stats()["webhooks_sent"] == 4)


def test_a_webhook_answered_5xx_is_retried_until_delivered(
    live: SimulatorProcess, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    submit_with_callback(live, receiver.url("/hook"))
    wait_for(lambda: len(receiver.bodies) == 1)
    wait_for(lambda: live.stats()["webhooks_sent"] == 1)
    stats = live.stats()
    assert stats["webhooks_failed"] == 2
    assert stats["webhooks_abandoned"] == 0


def test_a_webhook_is_abandoned_after_the_maximum_attempts(
    live: SimulatorProcess, receiver: Receiver
) -> None:
    live.configure(webhook_max_attempts=2)
    try:
        receiver.statuses = [500] * 10
        submit_with_callback(live, receiver.url("/hook"))
        wait_for(lambda: live.stats()["webhooks_abandoned"] == 1)
        assert live.stats()["webhooks_failed"] == 2
        assert receiver.bodies == []
    finally:
        live.configure(webhook_max_attempts=5)


def test_an_unreachable_callback_counts_failures_not_crashes(live: SimulatorProcess) -> None:
    live.configure(webhook_max_attempts=2)
    try:
        closed = Receiver()
        url = closed.url("/hook")
        closed.close()
        submit_with_callback(live, url)
        wait_for(lambda: live.stats()["webhooks_abandoned"] == 1)
        assert live.stats()["webhooks_failed"] == 2
    finally:
        live.configure(webhook_max_attempts=5)


def test_webhook_drop_rate_one_sends_nothing_and_counts_drops(
    live: SimulatorProcess, receiver: Receiver
) -> None:
    live.configure(webhook_drop_rate=1.0)
    task_id = submit_with_callback(live, receiver.url("/hook"))
    with live_client(live) as http:
        wait_for(lambda: http.get(f"/video/generations/{task_id}").json()["status"] == "succeeded")
    wait_for(lambda: live.stats()["webhooks_dropped"] == 1)
    assert receiver.bodies == []
    assert live.stats()["webhooks_sent"] == 0


def test_callbacks_to_non_loopback_hosts_are_not_called_by_default(
    live: SimulatorProcess,
) -> None:
    submit_with_callback(live, "https://your-server.example.com/webhook")
    wait_for(lambda: live.stats()["webhooks_blocked"] == 1)
    assert live.stats()["webhooks_sent"] == 0


def test_the_process_enforces_the_cap_and_reports_it_in_stats(live: SimulatorProcess) -> None:
    live.configure(concurrency_cap=1, gen_time_mean=30.0)
    with live_client(live) as http:
        assert http.post("/video/generations", json=BASIC).status_code == 200
        refused = http.post("/video/generations", json=BASIC)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    stats = live.stats()
    assert stats["rate_limited"] == 1
    assert stats["in_flight_by_key"] == {fp(KEY): 1}


def test_the_process_refuses_a_bad_knob(live: SimulatorProcess) -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        live.configure(failure_rate=3)


# Replies dropped or trickled on the wire -----------------------------------------------


def test_every_nth_accepted_submit_drops_its_connection_after_creating_the_task(
    sim: SimulatorProcess,
) -> None:
    sim.configure(drop_reply_every=3)
    outcomes: list[str] = []
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for n in range(6):
            try:
                reply = http.post(
                    "/video/generations", json=BASIC, headers={"Idempotency-Key": f"j{n}"}
                )
                outcomes.append(str(reply.status_code))
            except httpx.RemoteProtocolError:
                outcomes.append("dropped")
    assert outcomes == ["200", "200", "dropped", "200", "200", "dropped"]
    found = sim.stats()
    assert found["submissions"] == 6  # the dropped ones exist at the provider
    assert found["dropped_replies"] == 2
    assert found["billed_tasks"] == 6


def test_a_trickled_reply_arrives_whole_but_a_byte_at_a_time(sim: SimulatorProcess) -> None:
    sim.configure(trickle_seconds=0.3)
    chunks: list[bytes] = []
    with (
        httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {KEY}"}) as http,
        http.stream("POST", "/video/generations", json=BASIC) as reply,
    ):
        chunks.extend(reply.iter_raw())
    body = b"".join(chunks)
    assert body.startswith(b'{"task_id":"task_')
    assert len(chunks) > len(body) // 2  # not one write: the bytes came one by one


def test_dropped_and_trickled_replies_reach_kinovi_routes_too(sim: SimulatorProcess) -> None:
    sim.configure(drop_reply_every=2)
    outcomes = []
    with httpx.Client(
        base_url=sim.kinovi_url, headers={"Authorization": f"Bearer {KINOVI_KEY}"}
    ) as http:
        for n in range(4):
            try:
                reply = http.post(
                    "/jobs/createTask",
                    json=KINOVI_TEXT_TO_VIDEO,
                    headers={"Idempotency-Key": f"j{n}"},
                )
                outcomes.append(str(reply.status_code))
            except httpx.RemoteProtocolError:
                outcomes.append("dropped")
        sim.configure(drop_reply_every=0, trickle_seconds=0.2)
        with http.stream("POST", "/jobs/createTask", json=KINOVI_TEXT_TO_VIDEO) as reply:
            chunks = list(reply.iter_raw())
    assert outcomes == ["200", "dropped", "200", "dropped"]
    assert b"".join(chunks).startswith(b'{"taskId":"task_') and len(chunks) > 10
    found = sim.stats()
    assert (found["submissions"], found["dropped_replies"], found["billed_tasks"]) == (5, 2, 5)
