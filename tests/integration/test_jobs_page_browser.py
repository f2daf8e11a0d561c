"""The jobs page in headless Chromium, against a real worker, redis-server and simulator.

A batch with two invalid lines and a budget is enqueued and its page watched (through the
page's own polling) until it reaches 100 %, each kind of line counted apart; a finished
job's ``<video>`` loads the mp4 (and a range request is answered 206); the batch's contact
sheet shows a tile per line, a still as an image, and a clip plays while hovered; a clip
made from a still shows it and links to its page, which names the clip; the job list is
filtered; a queued job is canceled through the confirmation page, and a finished one
retaken with a new prompt through its form.

Skipped only when Chromium or its driver is not installed (``apt-get install chromium
chromium-driver``; ``.ci/run`` does it). Screenshots go to a temporary directory, or to
``docs/img/`` with ``RELAYDANCE_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from simulator.testing import SimulatorProcess
from tests.browser_helpers import (
    MODEL,
    TOKEN,
    Stack,
    answers,
    assert_the_clip_plays,
    free_port,
    listed,
    sign_in,
    store_a_still,
    studio_night,
    text,
)
from tests.fleet import ROOT, Fleet, fleet_env, point_this_process_at, wait_for
from worker.infra.redis_server import RedisServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="needs Chromium and chromedriver: apt-get install chromium chromium-driver",
    ),
]


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("jobs-page")
    port = free_port()
    update = os.environ.get("RELAYDANCE_UPDATE_SCREENSHOTS") == "1"
    shots = ROOT / "docs" / "img" if update else tmp / "shots"
    shots.mkdir(exist_ok=True)
    # The simulator takes 3 tasks at a time, the fleet sends up to 10: real 429s for the chart.
    with SimulatorProcess(gen_time_mean=0.4, gen_time_jitter=0.2, concurrency_cap=3) as sim:
        env = fleet_env(redis_url=redis_server.url, sim_url=sim.url, output_dir=tmp / "out",
                        RELAYDANCE_UI_TOKEN=TOKEN,
                        RELAYDANCE_REQUESTS_PER_SECOND="1000")  # fmt: skip
        fleet = Fleet(env, tmp, includes=["tasks.batches"]).start()
        web = subprocess.Popen(
            [sys.executable, "-c",
             f"from worker.web.app import serve; serve('127.0.0.1', {port}, log_level='warning')"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("RELAYDANCE_")},
                 **env}, cwd=ROOT, stdout=(tmp / "web.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), what="relaydance web")
            yield Stack(env, f"http://127.0.0.1:{port}/ui", shots)
        finally:
            web.terminate()
            web.wait(timeout=15)
            fleet.stop()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--window-size=1360,900",
                "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def live(stack: Stack, browser: Any, monkeypatch: pytest.MonkeyPatch) -> Stack:
    point_this_process_at(stack.env, monkeypatch)
    return stack


def test_a_batch_reaches_100_percent_and_its_finished_clip_plays(live: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    from tasks.batches import enqueue_batch

    sign_in(browser, live)
    batch = enqueue_batch(studio_night(), name="tonight", budget=10 * 0.7 + 0.1, skip_invalid=True,
                          output_name="{batch}/{line:04d}-{id}-{slug}")  # fmt: skip
    browser.get(f"{live.base}/batches/{batch.batch_id}")
    # The page is not reloaded: its script fetches the live part every few seconds.
    wait_for(lambda: text(browser, "#percent") == "100 %", timeout=90,
             what="the batch page to show 100 %")  # fmt: skip
    groups = {g: text(browser, f'[data-group="{g}"]') for g in ("done", "skipped", "invalid",
                                                                "canceled")}  # fmt: skip
    assert groups == {"done": "10", "skipped": "2", "invalid": "2", "canceled": "0"}
    assert text(browser, "#finished") == "finished"
    browser.save_screenshot(str(live.shots / "batch.png"))
    browser.get(f"{live.base}/batches")
    browser.save_screenshot(str(live.shots / "batches.png"))

    browser.get(f"{live.base}/jobs?batch={batch.batch_id}&state=done")
    rows = listed(browser)
    assert len(rows) == 10 and {state for _, state in rows} == {"done"}
    browser.get(f"{live.base}/jobs/{rows[0][0]}")
    assert (text(browser, "#prompt") or "").startswith("harbour at dawn, shot")
    assert_the_clip_plays(browser)
    assert "done" in (text(browser, "#timeline") or "")
    assert browser.find_elements(By.ID, "download-clip")
    assert browser.find_elements(By.ID, "download-manifest")
    browser.save_screenshot(str(live.shots / "job.png"))


def test_the_contact_sheet_shows_each_line_and_a_clip_plays_on_hover(
    live: Stack, browser: Any
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tasks.batches import enqueue_batch, wait_batch
    from worker.batch import Batches
    from worker.job.engine import get_engine

    sign_in(browser, live)
    shots = ["the harbour at dawn, boats leaving", "gulls over the breakwater",
             "the keeper climbs the tower stairs", "keyframe: the lamp room at dusk"]  # fmt: skip
    lines = [{"id": f"sc{i + 1:02d}", "model": MODEL, "prompt": p, "seconds": 5}
             for i, p in enumerate(shots)]  # fmt: skip
    batch = enqueue_batch([*lines, dict(lines[0], ratio="5:4", id="sc05")], name="harbour",
                          skip_invalid=True)  # fmt: skip
    wait_batch(batch.batch_id, timeout=90)
    jobs = Batches(get_engine()).job_ids(batch.batch_id)  # by item: the valid lines, in order
    store_a_still(jobs[3])
    browser.get(f"{live.base}/batches/{batch.batch_id}")
    browser.find_element(By.ID, "sheet-link").click()
    found = wait_for(lambda: browser.execute_script(
        "return Array.from(document.querySelectorAll('#sheet li.tile'))"
        ".map(t => [t.dataset.line, t.dataset.state, t.dataset.kind]);"),
        what="the contact sheet's tiles")  # fmt: skip
    assert found == [["1", "done", "video"], ["2", "done", "video"], ["3", "done", "video"],
                     ["4", "done", "image"], ["5", "invalid", "none"]]  # fmt: skip
    assert "the keeper climbs the tower" in (text(browser, '[data-line="3"] .excerpt') or "")
    still = browser.find_element(By.CSS_SELECTOR, '[data-line="4"] img.still')
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth;", still) == 1024,
             what="the still to load through the media endpoint")  # fmt: skip
    video = browser.find_element(By.CSS_SELECTOR, '[data-line="2"] video.clip')
    assert browser.execute_script("return arguments[0].muted && arguments[0].paused;", video)
    browser.execute_script(
        "arguments[0].addEventListener('playing', () => { arguments[0].dataset.played = '1'; });",
        video)  # fmt: skip
    ActionChains(browser).move_to_element(video).perform()
    wait_for(lambda: browser.execute_script(
        "return arguments[0].dataset.played === '1' && !arguments[0].paused;", video),
        timeout=20, what="the hovered clip to play")  # fmt: skip
    browser.save_screenshot(str(live.shots / "contact-sheet.png"))
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    wait_for(lambda: browser.execute_script("return arguments[0].paused;", video),
             what="the clip to pause when the pointer leaves")  # fmt: skip


def test_a_clips_page_shows_the_still_it_was_made_from_and_links_to_it(
    live: Stack, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    from tasks.batches import enqueue_batch, wait_batch
    from worker.batch import Batches
    from worker.job.engine import get_engine

    sign_in(browser, live)
    lines = [{"id": "k1", "model": "grok-imagine-image", "prompt": "keyframe: the lamp room"},
             {"model": MODEL, "prompt": "the lamp turns", "seconds": 5, "refs": ["k1"]}]  # fmt: skip
    batch = enqueue_batch(lines, name="lamp", budget=2.0)
    wait_batch(batch.batch_id, timeout=90)
    jobs = Batches(get_engine()).job_ids(batch.batch_id)  # by item, in line order
    still, clip = jobs[min(jobs)], jobs[max(jobs)]
    browser.get(f"{live.base}/jobs/{clip}")
    thumb = browser.find_element(By.CSS_SELECTOR, "#chain li.chain-still img.thumb")
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth;", thumb) > 0,
             what="the still's thumbnail to load through the media endpoint")  # fmt: skip
    browser.find_element(By.CSS_SELECTOR, "#chain li.chain-still a").click()
    wait_for(lambda: browser.current_url.endswith(f"/jobs/{still}"), what="the still's page")
    made = browser.find_element(By.CSS_SELECTOR, "#chain li.chain-clip")
    assert made.get_attribute("data-job") == clip


def test_a_finished_job_is_retaken_from_its_page_with_a_new_prompt(
    live: Stack, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    from tasks import enqueue_render, get_job, wait

    sign_in(browser, live)
    first = enqueue_render({"model": MODEL, "prompt": "a kite over the dunes", "seconds": 5})
    wait(first, timeout=60)
    browser.get(f"{live.base}/jobs/{first}")
    browser.find_element(By.ID, "retake").click()
    prompt = browser.find_element(By.ID, "prompt")
    assert prompt.get_attribute("value") == "a kite over the dunes"
    prompt.clear()
    prompt.send_keys("a kite over the dunes at sunset")
    browser.find_element(By.ID, "confirm").click()
    wait_for(lambda: browser.find_elements(By.ID, "retake-of"), what="the new take's page")
    second = browser.current_url.split("/jobs/")[1].split("?")[0]
    assert get_job(second).retake_of == first and get_job(first).retakes == [second]
    wait_for(lambda: text(browser, "#job-state") == "done", timeout=60, what="the retake to end")
    assert get_job(second).request["prompt"] == "a kite over the dunes at sunset"


def test_the_job_list_filters_by_state_and_prompt(live: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tasks import enqueue_render, wait

    sign_in(browser, live)
    job_id = enqueue_render({"model": MODEL, "prompt": "a lighthouse in fog", "seconds": 5})
    wait(job_id, timeout=60)
    browser.get(f"{live.base}/jobs")
    Select(browser.find_element(By.ID, "f-state")).select_by_value("done")
    browser.find_element(By.ID, "f-q").send_keys("lighthouse")
    browser.find_element(By.ID, "f-apply").click()
    wait_for(lambda: "q=lighthouse" in browser.current_url, what="the filtered list")
    assert listed(browser) == [(job_id, "done")]
    browser.get(f"{live.base}/jobs")
    browser.save_screenshot(str(live.shots / "jobs.png"))


def test_a_queued_job_is_canceled_from_its_page_through_the_confirmation(
    live: Stack, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    from worker.job.engine import get_engine
    from worker.job.record import JobState
    from worker.render.validation import validate_request

    sign_in(browser, live)
    engine = get_engine()
    # A job recorded but not yet sent: it stays queued while the page looks at it.
    request = validate_request({"model": MODEL, "prompt": "cancel me", "seconds": 5})
    job_id = engine.store.create_render(request, alias="default", due_in=600)
    browser.get(f"{live.base}/jobs/{job_id}")
    assert text(browser, "#job-state") == "queued"
    browser.find_element(By.ID, "cancel").click()
    assert "nothing is billed" in browser.page_source
    job = engine.store.get(job_id)
    assert job is not None and job.state is JobState.QUEUED  # the confirmation asked first
    browser.find_element(By.ID, "confirm").click()
    wait_for(lambda: browser.find_elements(By.ID, "notice"), what="the notice")
    assert text(browser, "#job-state") == "canceled"
    job = engine.store.get(job_id)
    assert job is not None and job.state is JobState.CANCELED


def test_the_keys_page_shows_limits_and_the_429s_drawn(live: Stack, browser: Any) -> None:

    sign_in(browser, live)
    browser.get(f"{live.base}/keys")
    cells, bars = browser.execute_script(
        "const r = document.querySelector('tr[data-alias=\"default\"]');"
        "return [Array.from(r.cells).map(c => c.textContent.trim()),"
        " r.querySelectorAll('svg.chart rect.r429').length];"
    )
    assert cells[1] == "relaydance" and cells[2] == "no" and cells[3] == "10"  # not paused
    # The 10-clip batch met the simulator's cap of 3: its 429s are counted and drawn.
    assert int(cells[8]) > 0 and bars > 0
    assert MODEL in (text(browser, "table.timing") or "")
    browser.save_screenshot(str(live.shots / "keys.png"))
