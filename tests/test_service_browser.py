"""The service's web page (service/static) in a real browser: headless Chromium driven by Selenium
against a real `alohac serve` process on 127.0.0.1.

Through the page: an analysis whose shown figures equal what `alohac analyze --json` prints, a
small security evaluation whose curve draws its points from the server-sent events, a slow job
cancelled (its process gone) and deleted, and server text that never becomes HTML. Screenshots of
each stage go to $ALOHA_TEST_ARTEFACTS (else the test's tmp folder); their paths are printed.

Needs Debian's chromium and chromium-driver (.ci/run installs them); skips with the reason
otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import time

import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed")
pytest.importorskip("uvicorn", reason="the service extra is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException, StaleElementReferenceException)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from service.client import Client, ServiceError  # noqa: E402
from service_util import Server, cli_json, group_alive  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium / chromedriver on PATH (Debian: apt-get install chromium "
           "chromium-driver; .ci/run installs them)")



@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    folder = os.environ.get("ALOHA_TEST_ARTEFACTS") or str(tmp_path_factory.mktemp("browser"))
    os.makedirs(folder, exist_ok=True)
    return folder


@contextlib.contextmanager
def _serve(root, *options: str):
    """A real `alohac serve` on a free local port, its data in `root`/data: yields (url, data)."""
    with Server(root / "data", "--workers", "2", *options) as s:
        yield s.url, s.data


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with _serve(tmp_path_factory.mktemp("service")) as served:
        yield served


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    try:
        # a laptop's screen: the viewport itself 1280 x 900 CSS pixels (screenshots that size)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(server, browser):
    """The page, loaded once: the stages build on it as a user's session would (the docs'
    screenshot shows an analysis and a curve together)."""
    url, _data = server
    browser.get(url + "/")
    wait(browser, 30, lambda d: _options(d, "an-model") and _options(d, "an-target")
         and _options(d, "se-data"))
    return browser


@pytest.fixture(scope="module")
def shot(page, artefacts):
    def save(name: str) -> str:
        path = os.path.join(artefacts, f"service-{name}.png")
        page.save_screenshot(path)
        print(f"screenshot: {path}")
        return path
    return save


def wait(driver, seconds: float, condition, message: str = ""):
    """WebDriverWait that treats an element the page re-rendered meanwhile as 'not yet'."""
    return WebDriverWait(driver, seconds, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,
                                             NoSuchElementException)).until(condition, message)


def _click(driver, css: str) -> None:
    """Click the element `css` names, again if the job list re-rendered it meanwhile (the list
    refreshes every 2 s)."""
    wait(driver, 10, lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True,
         f"cannot click {css}")


def _submit(driver, button_id: str) -> None:
    """Press a panel's submit button once it is enabled (it is disabled while the panel's job
    runs, and a click on it then does nothing)."""
    wait(driver, 30, lambda d: d.find_element(By.ID, button_id).is_enabled(),
         f"{button_id} stays disabled")
    driver.find_element(By.ID, button_id).click()


def _options(driver, select_id: str) -> list[str]:
    return [o.get_attribute("value") for o in
            driver.find_elements(By.CSS_SELECTOR, f"#{select_id} option")]


def _set(driver, field_id: str, value: str) -> None:
    box = driver.find_element(By.ID, field_id)
    box.clear()
    box.send_keys(value)


def _row_state(driver, job_id: str) -> str | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'#jobs-table tr[data-job-id="{job_id}"]')
    return rows[0].get_attribute("data-state") if rows else None


def _no_script_errors(driver) -> None:
    """No uncaught exception in the page's script since the last look (the console's network
    lines, such as an expected 4xx, are not script errors)."""
    errors = [e["message"] for e in driver.get_log("browser") if e.get("source") == "javascript"]
    assert not errors, errors


def test_analysis_shows_the_figures_alohac_analyze_prints(page, shot):
    cli = cli_json("analyze", "zoo:lenet5", "--target", "neuraghe-losa")
    Select(page.find_element(By.ID, "an-model")).select_by_value("zoo:lenet5")
    Select(page.find_element(By.ID, "an-target")).select_by_value("neuraghe-losa")
    Select(page.find_element(By.ID, "an-bits")).select_by_value("")
    _submit(page, "an-submit")
    wait(page, 60, lambda d: d.find_element(By.ID, "an-figures").is_displayed()
         and d.find_element(By.ID, "an-gantt-box").is_displayed(),
         f"no figures: {page.find_element(By.ID, 'an-error').text}")
    shown = {}
    for cell in page.find_elements(By.CSS_SELECTOR, "#an-figures td.num"):
        unit = cell.find_element(By.XPATH, "following-sibling::td").text
        shown[cell.get_attribute("data-key")] = (cell.text, unit, cell.get_attribute("data-value"))
    # each figure in the unit the page promises, to the digits it shows: the CLI's value
    for key, scale, unit in (("latency_s", 1e3, "ms"), ("energy_j", 1e3, "mJ"),
                             ("average_power_w", 1.0, "W"), ("memory_bytes", 1 / 1024, "KiB")):
        text, shown_unit, raw = shown[key]
        assert shown_unit == unit, key
        decimals = len(text.partition(".")[2])
        expected = cli[key] * scale
        assert abs(float(text) - expected) <= 0.5001 * 10 ** -decimals, (key, text, expected)
        assert len(text.replace(".", "").lstrip("0")) >= 4, (key, text)  # 4 significant digits
        assert float(raw) == cli[key], key
    assert shown["processors"][0] == str(cli["processors"])
    width = page.execute_script("return document.getElementById('an-gantt').naturalWidth")
    assert width > 0, "the Gantt chart did not load"
    shot("analyze")
    _no_script_errors(page)


def test_security_curve_draws_its_points_from_the_event_stream(page, shot, server):
    url, _data = server
    Select(page.find_element(By.ID, "se-model")).select_by_value("zoo:digits_cnn")
    Select(page.find_element(By.ID, "se-data")).select_by_value("digits")
    Select(page.find_element(By.ID, "se-attack")).select_by_value("pgd")
    Select(page.find_element(By.ID, "se-norm")).select_by_value("inf")
    _set(page, "se-eps", "0:0.2:0.05")
    _set(page, "se-samples", "20")
    _set(page, "se-steps", "3")
    _submit(page, "se-submit")
    curve = page.find_element(By.ID, "se-curve")
    # the first point is drawn while the job still runs (or at least before the page asks for
    # the final result: `streamed` counts the points that came as events)
    wait(page, 90, lambda d: int(curve.get_attribute("data-streamed") or 0) >= 1,
         f"no curve point arrived: {page.find_element(By.ID, 'se-error').text}")
    wait(page, 90, lambda d: d.find_element(By.ID, "se-examples-box").is_displayed(),
         f"the evaluation did not finish: {page.find_element(By.ID, 'se-error').text}")
    points = page.find_elements(By.CSS_SELECTOR, "#se-curve circle.pt")
    grid = [0.0, 0.05, 0.1, 0.15, 0.2]  # 0:0.2:0.05, STOP included
    assert len(points) == len(grid)
    assert int(curve.get_attribute("data-streamed")) >= len(grid)  # every point came as an event
    eps = sorted(float(p.get_attribute("data-eps")) for p in points)
    assert eps == pytest.approx(grid)
    job_id = page.find_element(By.ID, "security").get_attribute("data-job")
    result = Client(url).job(job_id)["result"]
    drawn = {float(p.get_attribute("data-eps")): float(p.get_attribute("data-accuracy"))
             for p in points}
    assert [drawn[e] for e in sorted(drawn)] == pytest.approx(result["accuracy"])
    # a point's height is its accuracy on the 0..1 axis: accuracy 1 at the top gridline
    ys = {float(p.get_attribute("data-accuracy")): float(p.get_attribute("cy")) for p in points}
    assert all(0 <= a <= 1 for a in ys)
    figures = {c.get_attribute("data-key"): c.text
               for c in page.find_elements(By.CSS_SELECTOR, "#se-figures td.num")}
    assert figures["level"] == result["level"]
    assert float(figures["clean_accuracy"]) == pytest.approx(result["clean_accuracy"], abs=5e-4)
    assert page.execute_script(
        "return document.getElementById('se-examples').naturalWidth") > 0
    shot("security")

    # the job in the list: selected, its log streamed and its artefacts linked
    _click(page, f'#jobs-table tr[data-job-id="{job_id}"] td')
    log = page.find_element(By.ID, "log")
    wait(page, 20, lambda d: "[end: succeeded]" in log.text, f"log: {log.text}")
    assert "wrote out/security.json" in log.text and "[point] epsilon 0.2" in log.text
    links = wait(page, 10, lambda d: d.find_elements(By.CSS_SELECTOR, "#artefacts a"))
    assert {a.text for a in links} == {f["path"] for f in Client(url).artefacts(job_id)}
    assert {"examples.png", "security.json", "security.png"} <= {a.text for a in links}
    shot("security-log")
    _no_script_errors(page)


def test_cancel_and_delete_a_running_job_from_the_job_list(page, shot, server):
    url, data = server
    client = Client(url)
    _set(page, "se-eps", "0:0.3:0.01")
    _set(page, "se-samples", "5000")
    _set(page, "se-steps", "5000")
    sec = page.find_element(By.ID, "security")
    before = sec.get_attribute("data-job")
    _submit(page, "se-submit")
    wait(page, 20, lambda d: sec.get_attribute("data-job") not in (None, "", before),
         f"not submitted: {page.find_element(By.ID, 'se-error').text}")
    job_id = sec.get_attribute("data-job")
    wait(page, 60, lambda d: _row_state(d, job_id) == "running", "the slow job never ran")
    db = sqlite3.connect(os.path.join(data, "jobs.sqlite"))
    try:
        deadline = time.monotonic() + 10
        pid = None
        while pid is None and time.monotonic() < deadline:
            pid = db.execute("SELECT pid FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            time.sleep(0.05)
    finally:
        db.close()
    assert pid, "the running job has no process id in the database"
    assert group_alive(pid)
    shot("running")
    _click(page, f'#jobs-table tr[data-job-id="{job_id}"] button.cancel')
    wait(page, 10, lambda d: _row_state(d, job_id) == "cancelled", "the job was not cancelled")
    assert client.job(job_id)["state"] == "cancelled"
    deadline = time.monotonic() + 2
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(pid), f"the cancelled job's process group {pid} still runs"
    wait(page, 10, lambda d: d.find_element(By.ID, "se-status").text == "cancelled")
    shot("cancelled")
    _no_script_errors(page)

    _click(page, f'#jobs-table tr[data-job-id="{job_id}"] button.delete')
    wait(page, 5, expected_conditions.alert_is_present(), "no confirmation asked").accept()
    wait(page, 10, lambda d: _row_state(d, job_id) is None, "the deleted job is still listed")
    with pytest.raises(ServiceError) as e:
        client.job(job_id)
    assert e.value.status == 404


def test_upload_an_onnx_model_from_the_page(page, tmp_path):
    from model_helpers import conv7x7
    model = str(tmp_path / "conv7x7.onnx")
    conv7x7(model)
    with open(model, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    page.find_element(By.ID, "an-upload").send_keys(model)
    status = page.find_element(By.ID, "an-status")
    wait(page, 30, lambda d: status.text.startswith("conv7x7.onnx: uploaded ONNX: "),
         f"not uploaded: {page.find_element(By.ID, 'an-error').text}")
    for select in ("an-model", "se-model"):
        assert f"model:{digest}" in _options(page, select)
    assert Select(page.find_element(By.ID, "an-model")).first_selected_option \
        .get_attribute("value") == f"model:{digest}"
    # not an ONNX file: the server's 415 and its message, in the page
    junk = tmp_path / "notes.onnx"
    junk.write_text("not a model")
    page.find_element(By.ID, "an-upload").send_keys(str(junk))
    error = page.find_element(By.ID, "an-error")
    wait(page, 30, lambda d: error.is_displayed(), "no error shown")
    assert error.text == "HTTP 415: notes.onnx is not an ONNX model (DecodeError)"
    _no_script_errors(page)


def test_server_text_is_shown_as_text_never_as_html(page):
    """An API error that quotes the request (here a model reference carrying markup) is shown
    literally; no element of the server's text enters the page."""
    ref = 'zoo:<img id="injected" src="x" onerror="window.injected = 1">'
    page.execute_script(
        "const s = document.getElementById('an-model');"
        "s.append(new Option(arguments[0], arguments[0])); s.value = arguments[0];", ref)
    _submit(page, "an-submit")
    error = page.find_element(By.ID, "an-error")
    wait(page, 20, lambda d: error.is_displayed(), "no error shown")
    assert error.text.startswith("HTTP 422: ") and '<img id="injected"' in error.text
    assert page.find_elements(By.ID, "injected") == []
    assert page.execute_script("return window.injected") is None
    _no_script_errors(page)


def test_a_later_point_event_refines_the_drawn_point(page):
    """A curve point as the first chunk of samples is done (50 of 100, drawn hollow), then the
    same epsilon over all samples: one point, moved to the new accuracy, filled."""
    page.execute_script("curve.reset([0, 0.1, 0.2], 'inf');"
                        "curve.set(0.1, 0.5, 50, 100);")
    dots = page.find_elements(By.CSS_SELECTOR, "#se-curve circle.pt")
    assert len(dots) == 1 and "partial" in dots[0].get_attribute("class").split()
    page.execute_script("curve.set(0.1, 0.4, 100, 100); curve.set(0, 0.9, 100, 100);")
    dots = {float(d.get_attribute("data-eps")): d
            for d in page.find_elements(By.CSS_SELECTOR, "#se-curve circle.pt")}
    assert sorted(dots) == [0, 0.1]
    refined = dots[0.1]
    assert float(refined.get_attribute("data-accuracy")) == 0.4
    assert "partial" not in refined.get_attribute("class").split()
    # its height: 0.4 of the way from the accuracy-0 gridline to the accuracy-1 one
    grid = [float(g.get_attribute("y1"))
            for g in page.find_elements(By.CSS_SELECTOR, "#se-curve line.grid")]
    y0, y1 = grid[0], grid[-1]
    assert float(refined.get_attribute("cy")) == pytest.approx(y0 + 0.4 * (y1 - y0))
    # and across: epsilon 0 at the axis' start, 0.1 halfway along the grid's 0..0.2
    xs = {e: float(d.get_attribute("cx")) for e, d in dots.items()}
    ends = [(float(a.get_attribute("x1")), float(a.get_attribute("x2")))
            for a in page.find_elements(By.CSS_SELECTOR, "#se-curve line.axis")
            if a.get_attribute("y1") == a.get_attribute("y2")
            and float(a.get_attribute("x2")) - float(a.get_attribute("x1")) > 100]
    assert len(ends) == 1, "one epsilon axis"
    (left, right), = ends
    assert xs[0] == pytest.approx(left) and xs[0.1] == pytest.approx((left + right) / 2)
    _no_script_errors(page)


def test_a_server_that_asks_for_a_token(browser, artefacts, tmp_path):
    """--token: the page says what is missing, takes the token, and then lists the models."""
    with _serve(tmp_path, "--token") as (url, data):
        browser.get(url + "/")
        error = browser.find_element(By.ID, "page-error")
        wait(browser, 20, lambda d: error.is_displayed(), "no error shown")
        assert error.text.startswith("HTTP 401: a bearer token is required")
        assert _options(browser, "an-model") == []
        box = browser.find_element(By.ID, "token")
        assert box.is_displayed()
        path = os.path.join(artefacts, "service-token.png")
        browser.save_screenshot(path)
        print(f"screenshot: {path}")
        with open(os.path.join(data, "token")) as f:
            box.send_keys(f.read().strip(), "\n")
        browser.execute_script("arguments[0].blur()", box)  # the change event
        wait(browser, 20, lambda d: "zoo:lenet5" in _options(d, "an-model"),
             f"no models after the token: {error.text}")
        assert not error.is_displayed()
        assert browser.find_element(By.ID, "version").text.startswith("aloha ")
        _no_script_errors(browser)
