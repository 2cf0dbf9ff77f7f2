"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against ``streamrec up --demo``.

Every panel must show data, no console error may occur, and an admin action must be refused
without the admin key and work with it. Screenshots go to the test's folder (and to
``$STREAMREC_TEST_SCREENSHOTS`` when set)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infra.stack import child_env, free_port

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
PANELS = ("stream", "api", "quality", "trends", "feedback", "models", "experiments", "explorer")

if CHROMIUM is None or DRIVER is None:
    pytest.skip("Chromium and chromium-driver are not installed (`make test` installs them with apt-get "
                "where it can: apt-get install chromium chromium-driver)", allow_module_level=True)


def _train(csv: Path, env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "infra", "train", "--interactions", str(csv), "--no-progress", *args],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return Path(out.stdout.strip().splitlines()[-1]).name


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`streamrec up --demo` with two trained runs: the first serving, the second a challenger."""
    tmp = tmp_path_factory.mktemp("dashboard")
    rows = ["user_id,item_id,timestamp,type"] + [
        f"user-{u:04d},item-{(u * 7 + j * 3) % 40:04d},{1_700_000_000 + u * 50 + j},click"
        for u in range(60) for j in range(8)]
    csv = tmp / "tiny.csv"
    csv.write_text("\n".join(rows) + "\n")
    env = child_env(data_dir=str(tmp / "data"), artifact_dir=str(tmp / "artifacts"), train_threads="1")
    for name in ("STREAMREC_KAFKA_BOOTSTRAP", "STREAMREC_REDIS_URL", "STREAMREC_ADMIN_KEY", "STREAMREC_ALLOW_INSECURE"):
        env.pop(name, None)
    champion = _train(csv, env, "--model", "popularity", "--promote", "--tag", "first")
    challenger = _train(csv, env, "--model", "ease", "--tag", "second")
    port = free_port()
    log = open(tmp / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "infra", "up", "--demo", "--no-scheduler", "--api-port", str(port)],
                          env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200 and \
                        httpx.get(f"{url}/version", timeout=2).json().get("model_run") == champion:
                    break
            except httpx.HTTPError:
                pass
            assert up.poll() is None, (tmp / "up.log").read_text()[-3000:]
            time.sleep(1)
        else:
            raise AssertionError("the demo stack did not come up in 180 s:\n" + (tmp / "up.log").read_text()[-3000:])
        # the worker has applied the demo's events: the explorer starts on the most popular item
        deadline = time.monotonic() + 120
        while not httpx.get(f"{url}/api/v1/stats/global", params={"days": 1}, timeout=5).json()["popular_items"]:
            assert time.monotonic() < deadline, "the demo's events never reached Redis"
            time.sleep(1)
        # some traffic, so the API panel has requests and the explorer a user with lists
        for u in range(1, 6):
            httpx.get(f"{url}/api/v1/recommendations/home", params={"user_id": f"user-{u:04d}", "k": 5}, timeout=10)
        key = (tmp / "data" / "admin_key").read_text().strip()
        yield {"url": url, "key": key, "champion": champion, "challenger": challenger, "tmp": tmp}
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1800"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _wait(driver, cond, timeout=60, what="a condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: cond(d), message=what)


def _shot(driver, tmp: Path, name: str) -> None:
    driver.save_screenshot(str(tmp / f"{name}.png"))
    extra = os.environ.get("STREAMREC_TEST_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(extra) / f"{name}.png"))


def test_every_panel_shows_data_without_console_errors(demo, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{demo['url']}/dashboard")
    for panel in PANELS:
        _wait(browser, lambda d, p=panel: d.find_element(By.CSS_SELECTOR, f'[data-panel="{p}"]').get_attribute("data-state") == "ready",
              what=f"panel {panel} to show data")
    # two overview polls: rates need a difference
    _wait(browser, lambda d: d.find_element(By.ID, "req-rate").text not in ("", "–"), what="a request rate")
    assert browser.find_element(By.ID, "champion").text == demo["champion"]
    runs = browser.find_element(By.CSS_SELECTOR, "#runs-table tbody").text
    assert demo["champion"] in runs and demo["challenger"] in runs
    assert "stream" in browser.find_element(By.ID, "live").text
    assert browser.find_element(By.CSS_SELECTOR, "#quality-table tbody tr").text  # lists per strategy
    # the demo's feedback: per-arm rates, aspects and comments
    _wait(browser, lambda d: "no feedback yet" not in d.find_element(By.ID, "feedback-table").text,
          what="the demo's feedback")
    assert "popularity" in browser.find_element(By.ID, "feedback-table").text
    assert browser.find_element(By.ID, "comments").text not in ("", "none")
    # per arm and day: a line per arm in each chart, and the ratings' distribution
    for chart in ("trend-ctr", "trend-positive", "trend-conversion", "trend-rating"):
        assert browser.find_elements(By.CSS_SELECTOR, f"#{chart} polyline[data-arm]"), chart
    assert "popularity" in browser.find_element(By.ID, "trend-legend").text
    bars = browser.find_elements(By.CSS_SELECTOR, "#ratings-bars rect")
    assert len(bars) == 5 and any(float(b.get_attribute("height")) > 0 for b in bars)
    # the demo's experiment: its arms with shares, exposure, CTR intervals and the lift against the control
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#experiments-table tr[data-arm="demo-ranking.treatment"]'),
          what="the demo experiment's arms")
    treatment = browser.find_element(By.CSS_SELECTOR, '#experiments-table tr[data-arm="demo-ranking.treatment"]').text
    assert "50.0%" in treatment and "popularity" in treatment and "[" in treatment, treatment
    assert "control" in browser.find_element(By.CSS_SELECTOR, '#experiments-table tr[data-arm="demo-ranking.control"]').text
    # the explorer: an item (seeded with the most popular one) and a user's lists with reasons
    _wait(browser, lambda d: d.find_element(By.ID, "item-view").get_attribute("data-state") == "ready", what="the item view")
    assert "often together" in browser.find_element(By.ID, "item-view").text
    browser.find_element(By.ID, "user-id").send_keys("user-0001")
    browser.find_element(By.CSS_SELECTOR, "#user-form button").click()
    _wait(browser, lambda d: d.find_element(By.ID, "user-view").get_attribute("data-state") == "ready", what="the user view")
    user_view = browser.find_element(By.ID, "user-view").text
    assert "policy" in user_view and "popularity" in user_view
    _shot(browser, demo["tmp"], "dashboard")
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, json.dumps(severe, indent=1)


def test_an_admin_action_is_refused_without_the_key_and_works_with_it(demo, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{demo['url']}/dashboard")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'button.promote[data-run="{demo["challenger"]}"]'),
          what="the challenger's promote button")
    browser.find_element(By.CSS_SELECTOR, f'button.promote[data-run="{demo["challenger"]}"]').click()
    _wait(browser, lambda d: "refused" in d.find_element(By.ID, "admin-result").text, what="a refusal")
    assert "401" in browser.find_element(By.ID, "admin-result").text
    assert httpx.get(f"{demo['url']}/version").json()["model_run"] == demo["champion"]

    browser.find_element(By.ID, "admin-key").click()
    browser.find_element(By.ID, "key-form-input").send_keys(demo["key"])
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    assert browser.execute_script("return sessionStorage.getItem('streamrec.adminKey')") == demo["key"]
    browser.find_element(By.CSS_SELECTOR, f'button.promote[data-run="{demo["challenger"]}"]').click()
    _wait(browser, lambda d: "401" not in d.find_element(By.ID, "admin-result").text
          and d.find_element(By.ID, "admin-result").text, what="the promotion's answer")
    answer = browser.find_element(By.ID, "admin-result").text
    assert answer.startswith(("done", "refused: ")) and "401" not in answer, answer
    if answer.startswith("done"):  # the gate let it through: the API serves it
        _wait(browser, lambda d: httpx.get(f"{demo['url']}/version").json()["model_run"] == demo["challenger"],
              what="the API to serve the promoted run")
    _shot(browser, demo["tmp"], "dashboard-admin")
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and "401" not in e["message"]]  # the refused request itself is logged by Chromium
    assert not severe, json.dumps(severe, indent=1)
