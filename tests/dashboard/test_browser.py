"""The dashboard in a real headless Chromium, against real workers (bin/geoq-worker) and the
real `bin/geoq dashboard`, on a real redis-server. Each page's screenshot goes to artifacts/."""

from __future__ import annotations

import base64
import json
import shutil
import signal
from pathlib import Path
from typing import Iterator

import pytest
import redis
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

import geoq
from geoq.admin.history import read_history
from geoq.admin.session import Session
from geoq.broker import keys
from geoq.config import default_config
from tests.support.dashboard import DashboardProcess, bury
from tests.support.ledger import Ledger
from tests.support.waiting import wait_until
from tests.support.worker_process import ROOT, WorkerProcess, write_config

ARTIFACTS = ROOT / "artifacts"
QUICK_RETRY = {"base": "50ms", "jitter": "none"}
ROUTES = {"t.job": {"handler": "tests.support.handlers:ok", "queue": "mail"},
          "t.other": {"handler": "tests.support.handlers:ok", "queue": "other"},
          "t.flaky": {"handler": "tests.support.handlers:flaky", "queue": "mail", "backoff": QUICK_RETRY},
          "t.broken": {"handler": "tests.support.handlers:broken", "queue": "mail", "max_retries": 1,
                       "backoff": QUICK_RETRY}}
SCRIPT = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    browser_path, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser_path and driver_path, "chromium and chromedriver must be on PATH (bin/test installs them)"
    options.binary_location = browser_path
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1000",
                "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def fleet(tmp_path: Path, redis_url: str, ledger: Ledger) -> Iterator[tuple[DashboardProcess, Path]]:
    """A worker on queues mail and other (strict priority), and the dashboard, on this test's database."""
    config = write_config(tmp_path / "fleet.yaml", redis_url, ROUTES,
                          worker={"queues": ["mail", "other"], "concurrency": 20, "block_timeout": "200ms"},
                          history={"flush_every": "1s"})
    with WorkerProcess(config, env=ledger.env) as worker, DashboardProcess(config) as dash:
        yield dash, config
        assert dash.stop(signal.SIGINT)[0] == 0
        assert worker.stop() == 0, worker.log()[-2000:]


def _open(browser: WebDriver, url: str, shot: str | None = None) -> str:
    browser.get(url)
    wait_until(lambda: browser.execute_script("return document.readyState") == "complete", message=url)
    if shot:   # the whole page, not only the window
        ARTIFACTS.mkdir(exist_ok=True)
        size = browser.execute_script("return [document.documentElement.scrollWidth, "
                                      "document.documentElement.scrollHeight]")
        shot_png = browser.execute_cdp_cmd("Page.captureScreenshot", {
            "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
        (ARTIFACTS / f"dashboard-{shot}.png").write_bytes(base64.b64decode(shot_png["data"]))
    return str(browser.page_source)


RUNS = 6 + 3 * 2 + 2 * 2   # t.job x6 once each, t.flaky x3 and t.broken x2 twice each


def _run_some_jobs(redis_url: str) -> None:
    """Real runs through the worker, so the overview has history to draw: six succeed, three fail
    once then succeed, two fail, retry and die; waits until the workers' flushes (every second
    in this config) have written every run."""
    with geoq.Client(redis_url) as client:
        client.enqueue_many([("t.job", {"n": n}, {"queue": "mail"}) for n in range(6)]
                            + [("t.flaky", {"failures": 1}, {"queue": "mail"})] * 3
                            + [("t.broken", {}, {"queue": "mail"})] * 2)
    session = Session(default_config(redis_url))

    def processed() -> int:
        return sum(m.processed for h in read_history(session, ["mail"], 3600) for m in h.minutes)
    wait_until(lambda: processed() == RUNS, timeout=30, message=f"{RUNS} runs in the history")


def _charted(browser: WebDriver) -> dict[str, int]:
    """Each series of the overview's first chart (jobs over the window), summed, from its data."""
    spec = json.loads(browser.find_element(By.CSS_SELECTOR, ".chart").get_attribute("data-chart") or "{}")
    return {series["label"]: sum(series["values"]) for series in spec["series"]}


def _errors(browser: WebDriver) -> list[str]:
    """Console errors since the last call (a CSP violation or a script error shows here)."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
            and "favicon" not in entry["message"]]


def test_every_page_loads_draws_its_charts_and_logs_no_error(browser: WebDriver, fleet: tuple[DashboardProcess, Path],
                                                             redis_url: str, redis_client: redis.Redis) -> None:
    dash, _ = fleet
    dead = bury(redis_client, "mail", [{"to": "a@example.com", "password": "hunter2", "n": n} for n in range(3)],
                error="SMTPServerDisconnected: Connection unexpectedly closed by 10.1.2.3")
    bury(redis_client, "other", [{"url": "https://example.com/hook"}], job_type="t.other",
         error="HTTPError: 503 from example.com")
    with geoq.Client(redis_url) as client:
        client.enqueue("t.job", {"report": 7}, queue="mail", delay=3600)
    _run_some_jobs(redis_url)
    _errors(browser)
    pages = {"overview": "/", "queues": "/queues", "workers": "/workers", "scheduled": "/scheduled?queue=mail",
             "dead": "/dead", "group": None, "job": f"/job?id={dead[0].id}"}
    for name, path in pages.items():
        if path is None:   # the first group's own page, reached by its link
            path = browser.find_element(By.LINK_TEXT, "jobs →").get_attribute("href")
            text = _open(browser, str(path), name)
        else:
            text = _open(browser, dash.url + path, name)
        assert "geoq" in browser.title and "Error" not in browser.title, (name, text[:500])
        assert _errors(browser) == [], name
        if name == "overview":
            assert len(browser.find_elements(By.CSS_SELECTOR, ".chart .uplot")) >= 2   # uPlot drew them
            assert _charted(browser) == {"processed": RUNS, "failed": 7, "dead": 2}
            assert "<td>t.flaky</td><td>6</td><td>3</td><td>3</td><td>3</td><td>0</td>" in text
        if name == "job":
            assert "hunter2" not in text


def test_pausing_a_queue_stops_the_workers_fetching_from_it(browser: WebDriver, fleet: tuple[DashboardProcess, Path],
                                                           redis_url: str, ledger: Ledger) -> None:
    dash, _ = fleet
    _open(browser, dash.url + "/queues")
    browser.find_element(By.CSS_SELECTOR, "form[action='/queues/pause'] input[value='mail'] ~ button").click()
    wait_until(lambda: "queue mail paused" in browser.page_source, message="pause notice")
    with geoq.Client(redis_url) as client:
        held = client.enqueue("t.job", {}, queue="mail")
        probe = client.enqueue("t.other", {}, queue="other")
        # The worker prefers mail (strict priority): once it has run the probe, it has passed mail by.
        wait_until(lambda: client.status(probe.id).state == "succeeded", message="probe job on queue other")
        assert client.status(held.id).state == "queued"
        browser.find_element(By.CSS_SELECTOR, "form[action='/queues/resume'] input[value='mail'] ~ button").click()
        wait_until(lambda: client.status(held.id).state == "succeeded", message="job of mail after resume")
    assert ledger.count() == 2


def test_retrying_a_dead_group_runs_its_jobs(browser: WebDriver, fleet: tuple[DashboardProcess, Path],
                                            redis_url: str, redis_client: redis.Redis) -> None:
    dash, _ = fleet
    jobs = bury(redis_client, "mail", [{"n": n} for n in range(4)], error="RuntimeError: flaky upstream 42")
    _open(browser, dash.url + "/dead?queue=mail")
    browser.find_element(By.CSS_SELECTOR, "form[action='/dead/retry'] input[name='fp'] ~ button").click()
    wait_until(lambda: "retried 4 dead jobs" in browser.page_source, message="retry notice")
    with geoq.Client(redis_url) as client:
        wait_until(lambda: all(client.status(j.id).state == "succeeded" for j in jobs), message="retried jobs ran")
    assert redis_client.zcard(keys.queue_keys("mail").dead) == 0


def test_a_script_in_a_payload_stays_text(browser: WebDriver, fleet: tuple[DashboardProcess, Path],
                                         redis_client: redis.Redis) -> None:
    dash, _ = fleet
    job = bury(redis_client, "mail", [{"html": SCRIPT}], error=f"ValueError: {SCRIPT}")[0]
    _open(browser, dash.url + f"/job?id={job.id}", "job-script")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    payload = browser.find_elements(By.TAG_NAME, "pre")[-1].text
    assert SCRIPT in payload


def test_a_form_without_its_token_is_refused_with_403(browser: WebDriver, fleet: tuple[DashboardProcess, Path],
                                                      redis_client: redis.Redis) -> None:
    dash, _ = fleet
    _open(browser, dash.url + "/queues")
    browser.execute_script("document.querySelectorAll('input[name=csrf]').forEach(function (e) { e.remove(); });")
    browser.find_element(By.CSS_SELECTOR, "form[action='/queues/pause'] input[value='mail'] ~ button").click()
    wait_until(lambda: "CSRF" in browser.page_source, message="refusal")
    assert "403" in browser.page_source
    assert not redis_client.exists(keys.queue_keys("mail").paused)


def _statuses(browser: WebDriver, path: str) -> list[int]:
    """HTTP statuses the browser received for `path` since the last call (its network log)."""
    out = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived" and message["params"]["response"]["url"].endswith(path):
            out.append(int(message["params"]["response"]["status"]))
    return out


def test_wrong_basic_auth_gets_401(browser: WebDriver, tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path / "auth.yaml", redis_url, ROUTES, dashboard={"username": "ops", "password": "pw"})
    with DashboardProcess(config) as dash:
        host = dash.url.removeprefix("http://")
        browser.get_log("performance")
        browser.get(f"http://ops:wrong@{host}/workers")
        wait_until(lambda: 401 in _statuses(browser, "/workers"), message="401 for a wrong password")
        _open(browser, f"http://ops:pw@{host}/queues", "auth")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Queues"
