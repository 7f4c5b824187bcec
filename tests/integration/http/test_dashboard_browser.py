"""The dashboard in a real headless Chromium driven by Selenium and Debian's chromedriver: jobs submitted over the
wire appear with their queued count, the throughput chart moves, and a dead letter's Requeue button runs the job.
Each test saves a screenshot under its tmp_path."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gearworks.protocol import PacketType
from tests.conftest import require
from tests.integration.http.conftest import HttpProcess
from tests.integration.server_wire import Wire, abandon
from tests.peers.raw_worker import RawWorker

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[test]')")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
T = PacketType


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium; its screenshot is saved as ``dashboard.png`` in the test's tmp_path at the end."""
    require(CHROMIUM, "chromium")
    require(CHROMEDRIVER, "chromium-driver")
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1100", "--user-data-dir=" + str(tmp_path / "profile")):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
        driver.quit()


def eventually(check: Callable[[], object], timeout: float = 15.0) -> object:
    """The first truthy value of ``check`` within ``timeout`` seconds (AssertionError otherwise)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except Exception:  # an element replaced by the next refresh between find and read
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, "the page did not show it in time"
        time.sleep(0.1)


def cell(driver: WebDriver, function: str, column: str) -> str:
    row = driver.find_element(By.CSS_SELECTOR, f'#functions tr[data-function="{function}"]')
    return str(row.find_element(By.CSS_SELECTOR, f"td.{column}").text)


def submit(port: int, function: bytes, count: int) -> None:
    with Wire(port) as client:
        for n in range(count):
            assert client.request(T.SUBMIT_JOB_BG, function, b"", b"%d" % n).type is T.JOB_CREATED


def test_submitted_jobs_appear_with_their_queued_count(http_server: HttpProcess, browser: WebDriver) -> None:
    browser.get(http_server.url + "/")
    assert "gearworks" in browser.title
    eventually(lambda: browser.find_element(By.ID, "connection").text == "live")
    submit(http_server.port, b"resize", 7)
    submit(http_server.port, b"thumbnail", 2)
    assert eventually(lambda: cell(browser, "resize", "queued") == "7")
    assert cell(browser, "thumbnail", "queued") == "2"
    assert browser.find_element(By.ID, "tile-queued").text == "9"


def test_the_throughput_chart_moves_as_workers_complete_jobs(http_server: HttpProcess, browser: WebDriver) -> None:
    browser.get(http_server.url + "/")
    chart = browser.find_element(By.ID, "throughput")
    eventually(lambda: int(chart.get_attribute("data-points") or 0) >= 1)
    assert float(chart.get_attribute("data-completed") or 0) == 0
    with RawWorker(http_server.port, {b"encode": lambda job: job.workload[::-1]}):
        for _ in range(4):  # jobs over a few seconds, so several points of the chart see them
            submit(http_server.port, b"encode", 300)
            time.sleep(0.5)
        eventually(lambda: float(chart.get_attribute("data-completed") or 0) > 0)
        eventually(lambda: cell(browser, "encode", "completed") == "1200")
    assert float(chart.get_attribute("data-max") or 0) >= 100
    rows = browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")
    assert len(rows) == 0 or "encode" in rows[0].text


def test_requeue_button_runs_a_dead_letter(http_server: HttpProcess, browser: WebDriver) -> None:
    submit(http_server.port, b"flaky", 1)
    handle = abandon(http_server.port, b"flaky").decode()  # lost once with --job-retries 1: buried
    browser.get(http_server.url + "/")
    requeue = f'#dead tr[data-handle="{handle}"] button.requeue'
    eventually(lambda: browser.find_element(By.CSS_SELECTOR, requeue))
    assert eventually(lambda: cell(browser, "flaky", "queued") == "0")
    with RawWorker(http_server.port, {b"flaky": lambda job: b"done at last"}) as worker:
        eventually(lambda: "flaky" in browser.find_element(By.ID, "workers").text)

        # The table is redrawn every second: find and click in one step, again if the button was just replaced.
        def click_requeue() -> bool:
            browser.find_element(By.CSS_SELECTOR, requeue).click()
            return True

        eventually(click_requeue)
        eventually(lambda: worker.seen)
        assert worker.seen == [(b"flaky", b"", b"0")]
        assert eventually(lambda: cell(browser, "flaky", "completed") == "1")
    assert eventually(lambda: browser.find_element(By.ID, "dead-empty").is_displayed())
