"""The console in a real browser (Debian's chromium and chromium-driver, driven by Selenium),
served over real HTTP by the same app as the API, with the RQ worker, a dialer and the FreeSWITCH
simulator behind it. A few flows, each through several pages; a screenshot of every page goes to
the run's temporary directory. A missing browser fails these tests, never skips them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import make_server

from tests.conftest import wav_bytes
from tests.e2e.conftest import ROOT, Stack
from tests.e2e.test_campaigns import window_around_now

CHROMIUM = os.environ.get("ZC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ZC_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 60.0


@pytest.fixture(scope="module")
def live_url(e2e_app: Any) -> Iterator[str]:
    """The app (API and console) over real HTTP on 127.0.0.1."""
    server = make_server("127.0.0.1", 0, e2e_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (the run's temporary directory; ZC_SCREENSHOT_DIR to keep them)."""
    wanted = os.environ.get("ZC_SCREENSHOT_DIR")
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def browser(shots: Path) -> Iterator[WebDriver]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing: apt-get install chromium chromium-driver (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException as exc:
        pytest.fail(f"the browser does not start: {exc.msg}")
    try:
        yield driver
        # no page broke the CSP or threw (HTTP error answers, some on purpose, are the flows' business)
        problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
        assert problems == [], problems
    finally:
        driver.quit()


def wait(driver: WebDriver, what: str, check: Any, timeout: float = WAIT) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        lambda d: check(d), message=f"waiting for {what}")


def shot(driver: WebDriver, shots: Path, name: str) -> None:
    driver.save_screenshot(str(shots / f"{name}.png"))


def sign_in(driver: WebDriver, url: str, tenant: Any) -> None:
    driver.get(url + "/")
    wait(driver, "the sign-in page", lambda d: "/login" in d.current_url)
    driver.find_element(By.ID, "email").send_keys(tenant.email)
    driver.find_element(By.ID, "password").send_keys(tenant.password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, "the overview", lambda d: d.find_elements(By.ID, "balance"))


def submit_confirmed(driver: WebDriver, button: Any) -> None:
    button.click()
    wait(driver, "the confirmation", lambda d: d.switch_to.alert).accept()


def text_of(driver: WebDriver, element_id: str) -> str:
    """An element's text read in the page at once (htmx replaces the live part while we look)."""
    text = driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
                                 element_id)
    return str(text).strip()


def click_live(driver: WebDriver, label: str) -> None:
    """Press a button of the live part (found and pressed in one step: htmx may swap it meanwhile)."""
    wait(driver, f"the {label} button", lambda d: d.execute_script(
        "const b = [...document.querySelectorAll('#progress button')].find(b => b.innerText.trim() === arguments[0]);"
        "if (b) { b.click(); return true; } return false;", label))


def flash_text(driver: WebDriver) -> str:
    return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".flash"))


def api(url: str, path: str, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run_worker(stack: Stack) -> None:
    """The RQ worker takes the jobs the pages enqueued (imports, conversions) and stops."""
    env = {**os.environ, "DATABASE_URL": stack.settings.database_url, "REDIS_URL": stack.settings.redis_url or "",
           "VAR_DIR": str(stack.settings.var_dir)}
    done = subprocess.run([sys.executable, "-m", "rq.cli", "worker", "--burst", "--worker-class",
                           "rq.worker.SimpleWorker", "--url", stack.settings.redis_url or "", "default"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_keys_audio_recording_and_a_cancelled_call(browser: WebDriver, live_url: str, stack: Stack,
                                                   make_tenant: Any, shots: Path, tmp_path: Path) -> None:
    driver = browser
    tenant = stack.tenant(make_tenant, balance="500")
    stack.dialer(stack.simulator())
    driver.get(live_url + "/login")
    shot(driver, shots, "login")
    sign_in(driver, live_url, tenant)
    assert "PKR 500.00" in driver.find_element(By.ID, "balance").text

    # a key made in the page works against the API, until it is revoked in the page
    driver.get(live_url + "/keys")
    driver.find_element(By.ID, "key-name").send_keys("CRM")
    driver.find_element(By.CSS_SELECTOR, "form[action='/keys'] button").click()
    key = wait(driver, "the new key", lambda d: d.find_element(By.ID, "new-key")).get_attribute("value")
    assert key.startswith("zc_live_")
    driver.find_element(By.CSS_SELECTOR, "[data-copy]").click()
    wait(driver, "the copy button to answer", lambda d: d.find_element(By.CSS_SELECTOR, "[data-copy]").text == "Copied")
    shot(driver, shots, "keys")
    assert api(live_url, "/api/v1/balance", key)[0] == 200
    driver.get(live_url + "/keys")
    assert key not in driver.page_source  # shown once
    submit_confirmed(driver, driver.find_element(By.CSS_SELECTOR, "form[action$='/revoke'] button"))
    wait(driver, "the revocation", lambda d: "is revoked" in flash_text(d))
    status, body = api(live_url, "/api/v1/balance", key)
    assert status == 401 and body["error"]["code"] == "API_KEY_REVOKED"

    # the webhooks page: the signing secret of status_callback URLs, the same as the API's; it fits a phone
    driver.get(live_url + "/webhooks")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Webhooks"
    driver.find_element(By.CSS_SELECTOR, "#signing-secret summary").click()
    secret = driver.find_element(By.ID, "signing-secret-value")
    assert secret.is_displayed() and secret.get_attribute("value") == api(
        live_url, "/api/v1/webhooks/signing-secret", tenant.api_key)[1]["secret"]
    shot(driver, shots, "webhooks")
    driver.set_window_size(390, 900)
    try:
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        shot(driver, shots, "webhooks-phone")
    finally:
        driver.set_window_size(1280, 1000)

    # upload a message (with its progress bar), then play it in the page
    wav = tmp_path / "greeting.wav"
    wav.write_bytes(wav_bytes(3.0))
    driver.get(live_url + "/audio")
    driver.find_element(By.ID, "audio-name").send_keys("Greeting")
    driver.find_element(By.ID, "audio-file").send_keys(str(wav))
    driver.find_element(By.CSS_SELECTOR, "form[data-upload] button").click()
    wait(driver, "the upload", lambda d: "“Greeting” is ready" in flash_text(d))
    player = driver.find_element(By.CSS_SELECTOR, "audio[aria-label='Play Greeting']")
    driver.execute_script("arguments[0].play()", player)
    wait(driver, "the message to play", lambda d: d.execute_script("return arguments[0].currentTime", player) > 0.2)
    assert driver.execute_script("return arguments[0].duration", player) == pytest.approx(3.0, abs=0.05)

    # record a message with the browser's (fake) microphone and save it
    driver.find_element(By.CSS_SELECTOR, "[data-record-start]").click()
    state = driver.find_element(By.CSS_SELECTOR, "[data-record-state]")
    wait(driver, "the recording to start", lambda d: "Recording" in state.text)
    time.sleep(1.5)  # a second and a half of the fake microphone's tone
    driver.find_element(By.CSS_SELECTOR, "[data-record-stop]").click()
    wait(driver, "the recording", lambda d: d.find_element(By.CSS_SELECTOR, "[data-record-form]").is_displayed())
    driver.find_element(By.CSS_SELECTOR, "[data-record-form] button").click()
    wait(driver, "the recorded upload", lambda d: "“Recorded message” is" in flash_text(d))
    if "being converted" in flash_text(driver):
        run_worker(stack)
        driver.refresh()
    row = driver.find_element(By.XPATH, "//tr[td[1][normalize-space()='Recorded message']]")
    assert "READY" in row.text and "WebM" in row.text
    shot(driver, shots, "audio")

    # place a call that rings, see it on its page, cancel it there
    driver.get(live_url + "/calls")
    driver.find_element(By.ID, "call-phone").send_keys("0300 1234503")
    Select(driver.find_element(By.ID, "call-audio")).select_by_visible_text("Greeting (3.0 s)")
    driver.find_element(By.CSS_SELECTOR, "form[action='/calls'] button").click()
    wait(driver, "the call's page", lambda d: "Calling +923001234503" in flash_text(d))
    call_url = driver.current_url

    def ringing(d: WebDriver) -> bool:
        d.get(call_url)
        return "Ring" in d.find_element(By.CSS_SELECTOR, "main").text

    wait(driver, "the call to ring", ringing)
    submit_confirmed(driver, driver.find_element(By.CSS_SELECTOR, "form[action$='/cancel'] button"))

    def cancelled(d: WebDriver) -> bool:
        d.get(call_url)
        return "CANCELLED" in d.find_element(By.TAG_NAME, "h1").text

    wait(driver, "the call to end CANCELLED", cancelled)
    shot(driver, shots, "call")
    call_id = call_url.rsplit("/", 1)[-1]
    assert stack.call(call_id).status == "CANCELLED"
    stack.assert_books_balance(tenant.account_id)

    # the audio in use by nothing now can go; a form without its CSRF token is refused
    driver.get(live_url + "/audio")
    driver.execute_script("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    submit_confirmed(driver, driver.find_element(By.CSS_SELECTOR, "form[action$='/delete'] button"))
    wait(driver, "the refusal", lambda d: "Form expired" in d.find_element(By.TAG_NAME, "h1").text)
    assert "The CSRF token is missing." in driver.page_source


def test_a_campaign_from_a_csv_with_bad_rows_runs_to_completed(browser: WebDriver, live_url: str, stack: Stack,
                                                               make_tenant: Any, upload: Any, shots: Path,
                                                               tmp_path: Path) -> None:
    driver = browser
    tenant = stack.tenant(make_tenant, balance="1000")
    other = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2.0)
    upload(tenant, seconds=1.0)
    sim = stack.simulator()
    sign_in(driver, live_url, tenant)

    phones = [f"0301555{i:03d}{d}" for i, d in enumerate("1626126161")]
    csv_file = tmp_path / "numbers.csv"
    csv_file.write_text("phone,name\n" + "\n".join(f"{p},Customer {i}" for i, p in enumerate(phones))
                        + "\n12345,too short\nnot a number,x\n" + phones[0] + ",duplicate\n")
    start, end = window_around_now(-1, 3)
    driver.get(live_url + "/campaigns/new")
    driver.find_element(By.ID, "c-name").send_keys("Eid offer")
    Select(driver.find_element(By.ID, "c-audio")).select_by_value(audio)
    driver.find_element(By.ID, "c-csv").send_keys(str(csv_file))
    for field, value in (("c-retries", "0"), ("c-conc", "5")):
        driver.find_element(By.ID, field).clear()
        driver.find_element(By.ID, field).send_keys(value)
    for field, value in (("c-ws", start), ("c-we", end)):
        driver.execute_script("arguments[0].value = arguments[1]", driver.find_element(By.ID, field), value)
    shot(driver, shots, "campaign-new")
    driver.find_element(By.CSS_SELECTOR, "form.form-grid button[type=submit]").click()
    wait(driver, "the campaign's page", lambda d: "IMPORTING" in text_of(d, "campaign-status"))
    campaign_url = driver.current_url
    campaign_id = campaign_url.rsplit("/", 1)[-1]
    assert "The phone list is being imported." in text_of(driver, "not-dialing")

    run_worker(stack)  # the import; the page follows by itself (htmx)
    wait(driver, "the import summary", lambda d: text_of(d, "import-accepted") == "10")
    assert text_of(driver, "import-invalid") == "2"
    rejected = text_of(driver, "progress")
    assert "12345" in rejected and "not a number" in rejected

    # no dialer yet: pause and resume in the page, and the API agrees
    status_of = lambda d: text_of(d, "campaign-status")  # noqa: E731
    wait(driver, "RUNNING", lambda d: "RUNNING" in status_of(d))
    click_live(driver, "Pause")
    wait(driver, "PAUSED", lambda d: "PAUSED" in status_of(d))
    assert "Paused. Resume it to continue dialing." in text_of(driver, "not-dialing")
    status, body = api(live_url, f"/api/v1/campaigns/{campaign_id}", tenant.api_key)
    assert status == 200 and body["status"] == "PAUSED" and body["not_dialing"]["reason"] == "PAUSED"
    click_live(driver, "Resume")
    wait(driver, "RUNNING again", lambda d: "RUNNING" in status_of(d))

    stack.dialer(sim)
    wait(driver, "COMPLETED, live in the page", lambda d: "COMPLETED" in status_of(d), timeout=120)
    assert text_of(driver, "progress-percent") == "100.0"
    assert driver.find_elements(By.CSS_SELECTOR, "#progress svg.chart rect")
    shot(driver, shots, "campaign")
    body = api(live_url, f"/api/v1/campaigns/{campaign_id}", tenant.api_key)[1]
    stats = body["statistics"]
    assert (stats["completed"], stats["busy"], stats["total"]) == (8, 2, 10)  # digits 1 and 6 answer, 2 is busy
    assert body["not_dialing"] is None
    stack.assert_books_balance(tenant.account_id)

    report = driver.execute_script(
        "return fetch(arguments[0]).then(r => r.text())", f"{live_url}/campaigns/{campaign_id}/report.csv")
    assert report.count("\n") == 11 and "'+923015550001" in report

    # the other pages, after the campaign: calls, a call's timeline, overview, billing, do-not-call
    driver.get(f"{live_url}/calls?campaign_id={campaign_id}&status=COMPLETED")
    assert len(driver.find_elements(By.CSS_SELECTOR, "table tbody tr")) == 8
    shot(driver, shots, "calls")
    driver.find_element(By.CSS_SELECTOR, "table tbody tr a").click()
    wait(driver, "a call's timeline", lambda d: "Answer" in d.find_element(By.CSS_SELECTOR, "ol.timeline").text)
    driver.get(live_url + "/")
    assert "COMPLETED" in driver.find_element(By.CSS_SELECTOR, "main").text
    shot(driver, shots, "overview")
    driver.get(live_url + "/campaigns")
    shot(driver, shots, "campaigns")
    driver.get(live_url + "/billing")
    assert "CHARGE" in driver.find_element(By.CSS_SELECTOR, "table").text
    shot(driver, shots, "billing")
    driver.get(live_url + "/dnc")
    driver.find_element(By.ID, "dnc-phone").send_keys("0301 5550001")
    driver.find_element(By.CSS_SELECTOR, "form[action='/dnc'] button").click()
    wait(driver, "the number listed", lambda d: "+923015550001" in d.find_element(By.CSS_SELECTOR, "table").text)
    dnc_csv = tmp_path / "dnc.csv"
    dnc_csv.write_text("phone\n03015550002\n03015550003\nbad\n")
    driver.find_element(By.ID, "dnc-csv").send_keys(str(dnc_csv))
    driver.find_element(By.CSS_SELECTOR, "form[action='/dnc/bulk'] button").click()
    wait(driver, "the upload queued", lambda d: "is being imported" in flash_text(d))
    run_worker(stack)
    driver.get(live_url + "/dnc")
    assert "+923015550003" in driver.find_element(By.CSS_SELECTOR, "table").text
    shot(driver, shots, "dnc")
    driver.get(live_url + "/password")
    shot(driver, shots, "password")

    # phone width: the campaign's page still reads (no sideways scroll of the page itself)
    driver.set_window_size(390, 844)
    driver.get(campaign_url)
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(driver, shots, "campaign-phone")

    # another tenant's ids answer 404 in the pages
    driver.set_window_size(1280, 1000)
    driver.find_element(By.CSS_SELECTOR, ".who button").click()
    wait(driver, "the sign-out", lambda d: "/login" in d.current_url)
    sign_in(driver, live_url, other)
    for path in (f"/campaigns/{campaign_id}", f"/campaigns/{campaign_id}/report.csv", f"/audio/{audio}.wav"):
        driver.get(live_url + path)
        assert driver.find_element(By.TAG_NAME, "h1").text == "Not found", path
    driver.get(live_url + "/campaigns")
    assert "Eid offer" not in driver.page_source
