"""Signing in to the jobs page: revocable sessions, throttled guessing, the form for browsers.

The page in-process (Starlette's test client, each client with its own address) against
a real redis-server, which holds the sessions and the failure counts. Every test is an
attack or a guarantee listed in docs/security.md, and fails without its fix: a stolen
cookie that outlives sign-out, a guess that is never throttled, a Basic dialog where the
form belongs.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from tests.integration.test_jobs_page import engine as engine  # the fixture, found by its name
from tests.jobs_page_helpers import TOKEN, csrf_of
from worker.job.engine import Engine
from worker.web.jobs_page import Credentials, JobsPage, asgi_app
from worker.web.jobs_page.sessions import ACCOUNT_LIMIT, CLIENT_LIMIT, WINDOW

USER, PASSWORD = "ops", "Pw-7hKq2xNm9RtL4vB8cZ3sD6fG1jW5yA0e"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Site:
    """One page (its credentials) reached by clients from addresses of a test's choosing."""

    def __init__(self, credentials: Credentials, *, https: bool = False) -> None:
        self.app = Starlette(routes=[Mount("/ui", app=asgi_app(JobsPage(credentials), root="/ui"))])
        self.base = "https://testserver" if https else "http://testserver"
        self.clients: list[TestClient] = []

    def client(self, address: str = "198.51.100.1") -> TestClient:
        client = TestClient(self.app, base_url=self.base, client=(address, 40000))
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def site(engine: Engine) -> Iterator[Site]:
    found = Site(Credentials(token=TOKEN, user=USER, password=PASSWORD))
    yield found
    found.close()


def sign_in(client: TestClient, **form: str) -> httpx.Response:
    data = {"next": "/ui/jobs", **(form or {"token": TOKEN})}
    return client.post("/ui/login", data=data, follow_redirects=False)


# Sessions ---------------------------------------------------------------------------------


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(site: Site) -> None:
    browser = site.client()
    assert sign_in(browser).status_code == 303
    stolen = browser.cookies["rd_ui"]
    page = browser.get("/ui/jobs")
    assert page.status_code == 200 and 'id="signout"' in page.text
    thief = site.client("203.0.113.66")
    thief.cookies.set("rd_ui", stolen)
    assert thief.get("/ui/jobs").status_code == 200  # the copy works while the session lives
    out = browser.post("/ui/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert thief.get("/ui/jobs").status_code == 401  # revoked on the server, not just forgotten


def test_new_credentials_end_every_open_session(engine: Engine, site: Site) -> None:
    browser = site.client()
    sign_in(browser)
    assert browser.get("/ui/jobs").status_code == 200
    changed = Site(Credentials(token=TOKEN + "-rotated", user=USER, password=PASSWORD))
    later = changed.client()
    later.cookies.set("rd_ui", browser.cookies["rd_ui"])
    assert later.get("/ui/jobs").status_code == 401
    changed.close()


def test_the_session_cookie_is_a_random_id_and_redis_keeps_only_its_digest(
    engine: Engine, site: Site
) -> None:
    browser = site.client()
    sign_in(browser)
    cookie = browser.cookies["rd_ui"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie)
    stored = [str(k) for k in engine.redis.scan_iter("rd:ui:session:*")]
    assert len(stored) == 1 and cookie not in stored[0]
    assert 0 < engine.redis.ttl(stored[0]) <= 12 * 3600


# Throttling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["bearer", "basic", "form"])
def test_guessing_from_one_client_is_throttled_with_429_and_retry_after(
    site: Site, how: str
) -> None:
    guesser = site.client("203.0.113.5")

    def attempt(right: bool) -> httpx.Response:
        if how == "bearer":
            token = TOKEN if right else f"guess-{TOKEN[::-1]}"
            return guesser.get("/ui/jobs", headers={"Authorization": f"Bearer {token}"})
        if how == "basic":
            return guesser.get("/ui/jobs", headers=basic(USER, PASSWORD if right else "guess"))
        return sign_in(guesser, user=USER, password=PASSWORD if right else "guess")

    for _ in range(CLIENT_LIMIT):
        assert attempt(right=False).status_code == 401
    locked = attempt(right=True)  # even the right credential: guessing must stop paying
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= WINDOW
    # Another client is not affected, and neither is a session opened before.
    assert (
        site.client("198.51.100.20")
        .get("/ui/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        .status_code
        == 200
    )


def test_guessing_spread_over_many_clients_is_throttled_per_account(site: Site) -> None:
    browser = site.client("198.51.100.7")
    sign_in(browser)  # a session opened before the attack
    for n in range(ACCOUNT_LIMIT):
        guesser = site.client(f"203.0.113.{n // (CLIENT_LIMIT - 1) + 10}")
        assert (
            guesser.get("/ui/jobs", headers={"Authorization": "Bearer wrong-guess"}).status_code
            == 401
        )
    fresh = site.client("192.0.2.200")
    answer = fresh.get("/ui/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    assert browser.get("/ui/jobs").status_code == 200  # the open session goes on
    # The other account (user and password) is counted apart.
    assert fresh.get("/ui/jobs", headers=basic(USER, PASSWORD)).status_code == 200


def test_a_throttled_browser_sees_the_form_with_the_wait(site: Site) -> None:
    browser = site.client("203.0.113.77")
    for _ in range(CLIENT_LIMIT):
        sign_in(browser, token="wrong-" + TOKEN)
    answer = sign_in(browser)
    assert answer.status_code == 429 and "retry-after" in answer.headers
    assert "Too many failed sign-ins" in answer.text and 'id="token"' in answer.text


# Browsers get the form -------------------------------------------------------------------------


def test_with_token_and_basic_a_browser_gets_the_form_never_a_basic_dialog(site: Site) -> None:
    page = site.client().get("/ui/jobs", headers=BROWSER)
    assert page.status_code == 401
    assert "www-authenticate" not in page.headers  # no Basic dialog in front of the form
    assert 'id="token"' in page.text and 'id="user"' in page.text and 'id="password"' in page.text
    script = site.client().get("/ui/jobs")
    assert script.status_code == 401 and script.headers["www-authenticate"].startswith("Basic")


def test_the_form_signs_in_with_the_user_and_password_too(site: Site) -> None:
    browser = site.client()
    assert sign_in(browser, user=USER, password="nope").status_code == 401
    assert sign_in(browser, user=USER, password=PASSWORD).status_code == 303
    assert browser.get("/ui/jobs", headers=BROWSER).status_code == 200


def test_the_sign_in_page_has_the_pages_styles_and_no_sign_out(site: Site) -> None:
    page = site.client().get("/ui/jobs", headers=BROWSER)
    assert '<link rel="stylesheet" href="/ui/static/app.css">' in page.text
    assert 'class="signin"' in page.text and "Sign out" not in page.text
    css = site.client().get("/ui/static/app.css", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ".signin {" in css.text


def test_sign_out_is_offered_only_to_a_session_that_signed_in(engine: Engine, site: Site) -> None:
    scripted = site.client().get("/ui/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scripted.status_code == 200 and "Sign out" not in scripted.text
    with_basic = site.client().get("/ui/jobs", headers=basic(USER, PASSWORD))
    assert with_basic.status_code == 200 and "Sign out" not in with_basic.text
    browser = site.client()
    sign_in(browser)
    assert "Sign out" in browser.get("/ui/jobs").text
    local = Site(Credentials(open_on_loopback=True))
    opened = local.client("127.0.0.1").get("/ui/jobs", headers={"Host": "127.0.0.1:8000"})
    assert opened.status_code == 200 and "Sign out" not in opened.text
    local.close()


# https --------------------------------------------------------------------------------------


def test_over_https_the_cookie_is_secure_and_every_answer_carries_hsts(engine: Engine) -> None:
    secure = Site(Credentials(token=TOKEN), https=True)
    browser = secure.client()
    answer = sign_in(browser)
    assert "; Secure" in answer.headers["set-cookie"]
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" in browser.get("/ui/jobs").headers
    plain = Site(Credentials(token=TOKEN)).client()
    answer = sign_in(plain)
    assert "Secure" not in answer.headers["set-cookie"]
    assert "strict-transport-security" not in answer.headers
    secure.close()
