"""Generated headers and bodies against every parser of the receiver and the jobs page: no 500.

The real ``relaydance web`` app (:func:`worker.web.app.create_web_app`), in-process through
httpx's ASGI transport, against a real redis-server; the server's own exceptions are
raised into the test, so any uncaught error fails it with its traceback. Each endpoint
gets at least 1,000 generated requests, mixing well-formed values with hostile ones:
thousands of digits (``Range: bytes=<5000 digits>-`` used to raise a ValueError), digits
``int()`` refuses (``²``), every Latin-1 character, broken base64, unclosed IPv6 brackets.
A malformed header is answered 400 (416 for a ``Range``), never 500.
"""

from __future__ import annotations

import asyncio
import base64
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import get_settings, load_settings
from tests.pipeline_helpers import RecordingEngine, make_engine, make_job
from worker.job.callback import token_for
from worker.job.engine import reset_engine
from worker.job.record import JobState
from worker.web.app import create_web_app

EXAMPLES = 1000
SECRET = "fuzz-webhook-secret-Ju7Qm2Vx9KpR4tLw8NcB3yHd6fZs1aGe"
UI_TOKEN = "fuzz-ui-token-Rt5Wq8Zx2LmN7bVc4KjH9gFd3sAp6yEu"
METRICS_TOKEN = "fuzz-metrics-token-Hy6Tb3Nq9WxK2mLp7Rc4Vz8Gf5Sd1aJe"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip

# Header values: anything an HTTP/1.1 server passes on (Latin-1, no CR/LF), and the shapes
# each parser expects, bent.
LATIN1 = [chr(c) for c in range(0x20, 0x100) if c != 0x7F]
ANY_TEXT = st.text(st.sampled_from(LATIN1), max_size=40)
# "²" passes str.isdigit() but not int(); "Ù£" is an Arabic-Indic digit's UTF-8 read as Latin-1.
ODD_DIGITS = st.lists(
    st.sampled_from(["0", "1", "9", "²", "³", "¹", "Ù£"]), min_size=1, max_size=8
).map("".join)
HUGE = st.integers(min_value=19, max_value=6000).map(lambda n: "9" * n)
NUMBER = st.one_of(st.integers(0, 10**6).map(str), HUGE, ODD_DIGITS, st.just(""), ANY_TEXT)
RANGE = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", NUMBER, NUMBER),
    st.builds(lambda a, b, c: f"bytes={a}-{b},{c}-", NUMBER, NUMBER, NUMBER),
    st.builds(lambda u, a: f"{u}={a}-", st.sampled_from(["items", "BYTES", "", "bytes "]), NUMBER),
    ANY_TEXT,
)
B64ISH = st.text(st.sampled_from(string.ascii_letters + string.digits + "+/=-_é "), max_size=40)
AUTHORIZATION = st.one_of(
    st.builds(lambda v: f"Bearer {v}", st.one_of(ANY_TEXT, st.just(UI_TOKEN), st.just(METRICS_TOKEN))),
    st.builds(lambda v: f"Basic {v}", B64ISH),
    st.builds(lambda u, p: "Basic " + base64.b64encode(f"{u}:{p}".encode("latin-1")).decode(),
              ANY_TEXT, ANY_TEXT),
    st.builds(lambda raw: "Basic " + base64.b64encode(raw).decode(), st.binary(max_size=30)),
    ANY_TEXT,
)  # fmt: skip
ORIGIN = st.one_of(
    st.builds(
        lambda h: f"http://{h}", st.sampled_from(["testserver", "[::1", "evil.test", "[zz]"])
    ),
    ANY_TEXT,
)
CONTENT_TYPE = st.one_of(
    st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                     "application/json; charset=utf-8", "application/problem+json", ";"]),
    ANY_TEXT,
)  # fmt: skip
COOKIE = st.one_of(st.builds(lambda v: f"rd_ui={v}", ANY_TEXT), ANY_TEXT)
HOST = st.one_of(
    st.sampled_from(["testserver", "[::1", "localhost:99999", "[::1]:8000", ""]), ANY_TEXT
)
FORWARDED = st.sampled_from(["x-forwarded-for", "x-forwarded-proto", "forwarded", "x-real-ip"])


def headers(**fields: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
    """Some of the named headers (each present or not), plus a forwarding header or not."""
    optional = {
        name.replace("_", "-"): st.one_of(st.none(), value) for name, value in fields.items()
    }
    extra = st.one_of(st.none(), st.tuples(FORWARDED, ANY_TEXT))
    return st.builds(
        lambda found, more: (
            {k: v for k, v in found.items() if v is not None} | (dict([more]) if more else {})
        ),
        st.fixed_dictionaries(optional),
        extra,
    )


BODY = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda t: t.encode(), st.text(max_size=200)),
    st.just(b'{"task_id": "t_1", "status": "succeeded"}'),
    st.integers(1, 40).map(lambda n: b"[" * n * 1000),
    st.builds(lambda d: f"token={d}&next=/ui/jobs&csrf={d}".encode(), ANY_TEXT),
)


class Fuzzed:
    """The web app behind httpx's ASGI transport on one event loop, a running job with its
    callback token, and a clip."""

    def __init__(self, engine: RecordingEngine, app: Any) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 40000))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self.job_id = make_job(engine)
        engine.store._change(self.job_id, states=None, to=JobState.RUNNING,
                            set={"remote_task_id": "t_1"})  # fmt: skip
        self.token = token_for(SECRET, self.job_id)
        (engine.settings.output_dir / f"{self.job_id}.mp4").write_bytes(MP4)
        self.answers: list[int] = []

    def send(self, method: str, path: str, head: dict[str, str], body: bytes = b"") -> int:
        raw = {name: value.encode("latin-1") for name, value in head.items()}  # as on the wire
        # The server's own exceptions propagate (ASGITransport raises them): a 500 cannot hide.
        answer = self.loop.run_until_complete(
            self.client.request(method, path, headers=raw, content=body)
        )
        self.answers.append(answer.status_code)
        assert answer.status_code < 500, (method, path, head, answer.text[:300])
        return answer.status_code

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.fixture
def fuzzed(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fuzzed]:
    for name, value in {"REDIS_URL": redis_url, "RELAYDANCE_UI_TOKEN": UI_TOKEN,
                        "RELAYDANCE_OUTPUT_DIR": str(tmp_path)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_engine()
    engine = make_engine(load_settings(
        redis_url=redis_url, api_key="sk-test-fuzz", base_url="https://provider.test/v1",
        webhook_base_url="https://app.example/hooks", webhook_secret=SECRET,
        metrics_token=METRICS_TOKEN, output_dir=tmp_path, metrics_port=0, ui_token=UI_TOKEN,
    ))  # fmt: skip
    found = Fuzzed(engine, create_web_app(engine=lambda: engine, prefix="/hooks"))
    yield found
    found.close()
    engine.close()
    get_settings.cache_clear()
    reset_engine()


@FUZZ
@given(head=headers(content_type=CONTENT_TYPE, content_length=NUMBER, host=HOST), body=BODY)
def test_the_webhook_receiver_never_answers_500(
    fuzzed: Fuzzed, head: dict[str, str], body: bytes
) -> None:
    status = fuzzed.send("POST", f"/hooks/{fuzzed.job_id}/{fuzzed.token}", head, body)
    if "content-length" in head and not head["content-length"].strip().isascii():
        assert status == 400


def test_the_webhook_fuzz_reached_every_answer(fuzzed: Fuzzed) -> None:
    # A control: the generated requests do reach past the parsers (202 and 400 both occur).
    for head, body in (({"content-type": "application/json"}, b'{"task_id": "t_1"}'),
                       ({"content-type": "application/json", "content-length": "²"}, b"{}")):  # fmt: skip
        fuzzed.send("POST", f"/hooks/{fuzzed.job_id}/{fuzzed.token}", head, body)
    assert fuzzed.answers == [202, 400]


@FUZZ
@given(head=headers(authorization=AUTHORIZATION, host=HOST))
def test_metrics_never_answer_500(fuzzed: Fuzzed, head: dict[str, str]) -> None:
    assert fuzzed.send("GET", "/metrics", head) in (200, 404)


@FUZZ
@given(head=headers(origin=ORIGIN, content_type=CONTENT_TYPE, content_length=NUMBER, host=HOST,
                    cookie=COOKIE, authorization=AUTHORIZATION, accept=ANY_TEXT), body=BODY)  # fmt: skip
def test_the_sign_in_form_never_answers_500(
    fuzzed: Fuzzed, head: dict[str, str], body: bytes
) -> None:
    fuzzed.send("POST", "/ui/login", head, body)


@FUZZ
@given(head=headers(authorization=AUTHORIZATION, cookie=COOKIE, host=HOST, accept=ANY_TEXT),
       query=st.dictionaries(st.sampled_from(["state", "after", "q", "batch", "fragment", "alias"]),
                             ANY_TEXT, max_size=3))  # fmt: skip
def test_the_jobs_list_never_answers_500(
    fuzzed: Fuzzed, head: dict[str, str], query: dict[str, str]
) -> None:
    from urllib.parse import urlencode

    fuzzed.send("GET", "/ui/jobs?" + urlencode(query), head)


@FUZZ
@given(head=headers(range=RANGE, host=HOST))
def test_the_clip_never_answers_500_and_a_bad_range_is_416(
    fuzzed: Fuzzed, head: dict[str, str]
) -> None:
    head["authorization"] = f"Bearer {UI_TOKEN}"
    status = fuzzed.send("GET", f"/ui/media/{fuzzed.job_id}.mp4", head)
    assert status in (200, 206, 416, 400)
    if re.fullmatch(r"bytes=9{19,}-", head.get("range", "")):  # past any end: was a 500
        assert status == 416


@FUZZ
@given(head=headers(origin=ORIGIN, content_type=CONTENT_TYPE, content_length=NUMBER, host=HOST),
       body=BODY)  # fmt: skip
def test_the_cancel_form_never_answers_500(
    fuzzed: Fuzzed, head: dict[str, str], body: bytes
) -> None:
    head["authorization"] = f"Bearer {UI_TOKEN}"
    fuzzed.send("POST", f"/ui/jobs/{fuzzed.job_id}/cancel", head, body)
