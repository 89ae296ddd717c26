"""The web page in a real browser: headless Chromium (Debian's chromium and
chromium-driver, deploy/local/install-deps.sh) driven by selenium, against a worker
holding known data (tests/support/web_data.py).

Checks what a person sees: the numbers in the tables equal the API's and the counted
events', the charts have one point per window, a clear message when there is nothing,
when the API refuses a request and when the worker is stopped. A screenshot of each view
is written to .local/test-output/web/ (laptop and phone sizes).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from support.pipeline import HOUR, Pipeline
from support.web_data import HOLDER, HOURS, ORIGINS, TRACKS, WebData

OUTPUT = Path(__file__).resolve().parents[2] / ".local" / "test-output" / "web"
CHROMIUM = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
LAPTOP = (1280, 900)
PHONE = (390, 844)
DAY = 24 * HOUR


def _find(names: tuple[str, ...] | str) -> str:
    for name in (names,) if isinstance(names, str) else names:
        found = shutil.which(name) or shutil.which(name, path="/usr/lib/chromium")
        if found:
            return found
    pytest.fail(f"{names} not found: run deploy/local/install-deps.sh chromium chromedriver",
                pytrace=False)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a new empty profile and no calls home."""
    profile = tempfile.mkdtemp(prefix="streamer-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = _find(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={LAPTOP[0]},{LAPTOP[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_find(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# -- what a person sees -------------------------------------------------------------------


def open_view(driver: WebDriver, base: str, fragment: str, timeout: float = 30) -> WebElement:
    """Open ``base/#fragment`` and wait until its view has loaded (or failed)."""
    view_id = fragment.split("?")[0]
    driver.get(f"{base}/#{fragment}")
    driver.refresh()  # a new hash on the same page must render too; refresh makes it fresh
    return wait_state(driver, view_id, ("ready", "empty", "error"), timeout)


def wait_state(driver: WebDriver, view_id: str, states: tuple[str, ...],
               timeout: float = 30) -> WebElement:
    def loaded(d: WebDriver) -> WebElement | bool:
        found = d.find_elements(By.ID, f"view-{view_id}")
        return found[0] if found and found[0].get_attribute("data-state") in states else False

    try:
        element = WebDriverWait(driver, timeout).until(loaded)
    except TimeoutException:
        raise AssertionError(f"view {view_id} not in {states} after {timeout}s: "
                             f"{driver.find_element(By.TAG_NAME, 'main').text[:500]}") from None
    assert isinstance(element, WebElement)
    return element


def table(view: WebElement, css: str) -> list[dict[str, str]]:
    """Rows of the table ``css`` as {column key: cell's raw value (or text)}."""
    rows = []
    for tr in view.find_elements(By.CSS_SELECTOR, f"table.{css} tbody tr"):
        row = {}
        for td in tr.find_elements(By.CSS_SELECTOR, "td"):
            raw = td.get_attribute("data-value")
            row[str(td.get_attribute("data-key"))] = raw if raw is not None else td.text
        rows.append(row)
    return rows


def chart_points(view: WebElement, css: str) -> list[int]:
    return [int(str(box.get_attribute("data-points")))
            for box in view.find_elements(By.CSS_SELECTOR, css)]


def screenshot(driver: WebDriver, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(600, min(int(height) + 120, 4000)))
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(path)), path
    print(f"screenshot: {path}")
    return path


def download_csv(driver: WebDriver, button_css: str) -> str:
    """Click a CSV download button; the text of the file the browser was given."""
    driver.execute_script(
        "window.__csv = null; const real = URL.createObjectURL;"
        "URL.createObjectURL = (blob) => { window.__csv = blob; return real(blob); };")
    driver.find_element(By.CSS_SELECTOR, button_css).click()
    text: str = driver.execute_async_script(
        "const done = arguments[0];"
        "const poll = () => window.__csv ? window.__csv.text().then(done) : setTimeout(poll, 50);"
        "poll();")
    return text


def severe_console_errors(driver: webdriver.Chrome, allowed: Callable[[str], bool]) -> list[str]:
    # ChromiumDriver.get_log has no annotations.
    entries: list[dict[str, Any]] = cast(Any, driver).get_log("browser")
    return [entry["message"] for entry in entries
            if entry["level"] == "SEVERE" and not allowed(entry["message"])]


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Selenium blocks; the worker helpers are async: keep the event loop free."""
    return await asyncio.to_thread(fn, *args)


# -- the test --------------------------------------------------------------------------------


async def test_every_view_shows_the_apis_numbers_then_the_worker_stopping(
        make_pipeline: Any, browser: webdriver.Chrome) -> None:
    pipe: Pipeline = await make_pipeline()
    worker = await pipe.start_worker()
    data = WebData.make()
    await data.send(pipe)
    base = worker.base_url
    last = data.hour_starts[-1]

    # Trending: the table is the API's answer for the same window, and the counted truth.
    view = await in_thread(open_view, browser, base, f"trending?window=1h&limit=10&at={last}")
    status, api = await worker.get("/v1/trending", {"window": "1h", "at": last, "limit": 10})
    assert status == 200
    rows = table(view, "trending")
    assert [(r["track_id"], int(r["creates"]), r["genre"], r["ai_origin"]) for r in rows] == [
        (i["track_id"], i["creates"], i["genre"], i["ai_origin"]) for i in api["items"]]
    assert [(r["track_id"], int(r["creates"])) for r in rows] == data.top(last, HOUR, 10)
    badges = view.find_elements(By.CSS_SELECTOR, "table.trending .badge")
    assert [b.text for b in badges] == [
        {"human": "human", "ai_assisted": "AI-assisted", "ai_generated": "AI-generated",
         "unknown": "unknown"}[r["ai_origin"]] for r in rows]
    share = view.find_element(By.CSS_SELECTOR, ".ai-share")
    assert float(str(share.get_attribute("data-value"))) == pytest.approx(api["ai_share"])
    assert share.text == f"{100 * api['ai_share']:.1f} %"
    await in_thread(screenshot, browser, "trending")

    # Switching the window with the control re-renders from the API.
    browser.find_element(By.CSS_SELECTOR, "#f-window option[value='1d']").click()
    browser.find_element(By.CSS_SELECTOR, "#view-trending form button[type=submit]").click()
    view = await in_thread(wait_state, browser, "trending", ("ready", "empty", "error"))
    assert "window=1d" in browser.current_url
    status, api = await worker.get("/v1/trending", {"window": "1d", "at": last, "limit": 10})
    assert [r["track_id"] for r in table(view, "trending")] == [
        i["track_id"] for i in api["items"]]

    # Trending of one genre: its own ranking, from its own sorted sets.
    view = await in_thread(open_view, browser, base, f"trending?window=1h&genre=lofi&at={last}")
    rows = table(view, "trending")
    assert [(r["track_id"], int(r["creates"])) for r in rows] == data.top(last, HOUR, 20,
                                                                          "lofi")
    assert {r["genre"] for r in rows} == {"lofi"}
    assert "does not rank trending per genre" not in view.text
    status, api = await worker.get("/v1/trending", {"window": "1h", "at": last,
                                                    "genre": "lofi"})
    assert float(str(view.find_element(By.CSS_SELECTOR, ".ai-share").get_attribute(
        "data-value"))) == pytest.approx(api["ai_share"])

    # AI share over time: three genres at once, one point per hour, the numbers table.
    first = data.hour_starts[0]
    fragment = (f"ai-share?genres=lofi,hyperpop,ambient&window=1h&from={_iso_minute(first)}"
                f"&to={_iso_minute(last)}")
    view = await in_thread(open_view, browser, base, fragment)
    assert view.get_attribute("data-state") == "ready", view.text
    assert chart_points(view, "#chart-ai-share") == [HOURS]
    # Per genre: the AI share of uses and (dashed) of its top trending tracks.
    assert view.find_element(By.ID, "chart-ai-share").get_attribute("data-series") == "6"
    assert chart_points(view, ".chart.stacked") == [HOURS] * 3
    await in_thread(screenshot, browser, "ai-share")
    view.find_element(By.CSS_SELECTOR, "details.numbers summary").click()
    series_tables = view.find_elements(By.CSS_SELECTOR, "table.series")
    assert len(series_tables) == 3
    for genre, shown in zip(("lofi", "hyperpop", "ambient"), series_tables, strict=True):
        status, api = await worker.get(f"/v1/genres/{genre}/ai-share",
                                       {"window": "1h", "from": first, "to": last})
        assert status == 200
        cells = [{td.get_attribute("data-key"): td.get_attribute("data-value")
                  for td in tr.find_elements(By.TAG_NAME, "td")}
                 for tr in shown.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert len(cells) == len(api["series"]) == HOURS
        for row, point in zip(cells, api["series"], strict=True):
            expected = data.uses_by_origin(point["start_ms"], HOUR, genre)
            for origin in ORIGINS:
                assert int(str(row[origin])) == sum(point["uses_by_origin"][origin].values())
                assert int(str(row[origin])) == sum(expected[origin].values())
    await in_thread(screenshot, browser, "ai-share-numbers")
    browser.set_window_size(*PHONE)
    view = await in_thread(open_view, browser, base, fragment)
    assert chart_points(view, ".chart.stacked") == [HOURS] * 3
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"
    await in_thread(screenshot, browser, "ai-share-phone")
    browser.set_window_size(*LAPTOP)

    # The whole catalog, with the trending AI share line (dashed) beside the uses line.
    view = await in_thread(open_view, browser, base,
                           f"ai-share?genres=&window=1h&from={first}&to={last}&top=3")
    assert chart_points(view, "#chart-ai-share") == [HOURS]
    assert view.find_element(By.ID, "chart-ai-share").get_attribute("data-series") == "2"
    view.find_element(By.CSS_SELECTOR, "details.numbers summary").click()
    shares = [float(str(td.get_attribute("data-value"))) for td in view.find_elements(
        By.CSS_SELECTOR, "table.series td[data-key=trending_ai_share]")]
    assert shares == pytest.approx([data.trending_ai_share(s, HOUR, 3)
                                    for s in data.hour_starts])

    # A track over time: one API call per window; the table equals the counted uses.
    view = await in_thread(open_view, browser, base, "track?track=lo-g1&window=1h&points=12")
    assert chart_points(view, "#chart-track") == [12]
    view.find_element(By.CSS_SELECTOR, "details.numbers summary").click()
    rows = table(view, "series")
    assert len(rows) == 12
    for row in rows:
        start = int(row["start_ms"])
        assert {k: int(row[k]) for k in ("create", "play")} == data.track_uses("lo-g1", start,
                                                                                HOUR), row
    assert sum(int(r["create"]) + int(r["play"]) for r in rows) > 0
    territory_note = view.find_element(By.CSS_SELECTOR, ".territories").text
    status, latest = await worker.get("/v1/tracks/lo-g1/usage", {
        "window": "1h", "at": int(rows[-1]["start_ms"]), "by": "territory"})
    if status == 400:  # no territory counters for 1h windows: the API's reason, shown
        assert latest["error"] in territory_note
    elif "territories" in latest:
        assert {r["territory"] for r in table(view, "territory")} <= set(latest["territories"])
    else:
        assert "does not count territories" in territory_note
    await in_thread(screenshot, browser, "track")

    # A holder over a date range: totals per right and use equal the counted uses.
    day = first - first % DAY
    end_day = last - last % DAY
    from_day = _iso_day(day)
    to_day = _iso_day(end_day)
    view = await in_thread(open_view, browser, base,
                           f"holder?holder={HOLDER}&from={from_day}&to={to_day}")
    assert view.get_attribute("data-state") == "ready", view.text
    days = (end_day - day) // DAY + 1
    assert chart_points(view, "#chart-holder") == [days]
    rights = {(r["right"], r["use"]): r for r in table(view, "rights")}
    holder_expected = data.holder_uses(day, (end_day - day) + DAY)
    weighted = data.holder_weighted_micro(day, (end_day - day) + DAY)
    for use in ("create", "play"):
        assert int(rights[("master", use)]["uses"]) == holder_expected[use]
        assert int(rights[("master", use)]["weighted_micro"]) == weighted[use]
        assert int(rights[("publishing", use)]["uses"]) == 0
    status, by_territory = await worker.get(f"/v1/holders/{HOLDER}/usage", {
        "from": from_day, "to": to_day, "by": "territory"})
    shown = view.find_element(By.CSS_SELECTOR, ".territories")
    if status == 200 and by_territory.get("territories"):
        assert {r["territory"] for r in table(shown, "territory")} == {
            t for t, rights in by_territory["territories"].items()
            if any(rights[r]["uses"][u] for r in rights for u in rights[r]["uses"])}
    elif status == 200:
        assert "No territory counts in this range" in shown.text
    else:
        assert by_territory["error"] in shown.text
    csv_text = await in_thread(download_csv, browser, "#view-holder button.download")
    lines = csv_text.splitlines()
    assert lines[0] == "right,use,uses,weighted_micro"
    assert f"master,create,{holder_expected['create']},{weighted['create']}" in lines
    await in_thread(screenshot, browser, "holder")

    # Nothing to show: said in words, not an empty frame.
    view = await in_thread(open_view, browser, base, "track?track=no-such-track&points=12")
    assert view.get_attribute("data-state") == "empty"
    assert "No uses of no-such-track" in view.find_element(By.CSS_SELECTOR, ".message").text
    # The API refusing a request: its error, shown.
    view = await in_thread(open_view, browser, base, "ai-share?genres=Lo Fi&window=1h")
    assert view.get_attribute("data-state") == "error"
    alert = view.find_element(By.CSS_SELECTOR, ".message.error")
    assert "The API answered 400" in alert.text and "invalid genre" in alert.text

    # Everything came from this worker: no request anywhere else was even tried.
    errors = severe_console_errors(browser, lambda m: "400 (Bad Request)" in m
                                   or "404 (Not Found)" in m)
    assert errors == []

    # The worker stops: the page says so on its next refresh.
    view = await in_thread(open_view, browser, base, "trending?window=1h")
    await worker.aterminate()
    view = await in_thread(wait_state, browser, "trending", ("error",), 30)
    alert = view.find_element(By.CSS_SELECTOR, ".message.error")
    assert "does not answer" in alert.text
    assert alert.get_attribute("role") == "alert"
    await in_thread(screenshot, browser, "worker-stopped")


def _iso_minute(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _iso_day(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def test_known_tracks_cover_every_origin() -> None:
    """The data the page is tested on has every origin in some genre."""
    assert {origin for _, origin, _ in TRACKS.values()} == set(ORIGINS)


async def test_a_worker_with_a_token_asks_for_it_then_shows_the_data(
        make_pipeline: Any, browser: webdriver.Chrome) -> None:
    pipe: Pipeline = await make_pipeline()
    worker = await pipe.start_worker(STREAMER_WEB_TOKEN="web-s3cret")
    base = worker.base_url
    view = await in_thread(open_view, browser, base, "trending?window=1h")
    assert view.get_attribute("data-state") == "error"
    assert "The API answered 401" in view.find_element(By.CSS_SELECTOR, ".message.error").text
    box = browser.find_element(By.ID, "token-box")
    assert box.is_displayed()
    field = browser.find_element(By.ID, "token-input")
    field.send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    view = await in_thread(wait_state, browser, "trending", ("error",))
    assert "401" in view.text and box.is_displayed()
    field.clear()
    field.send_keys("web-s3cret")
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    view = await in_thread(wait_state, browser, "trending", ("ready", "empty"))
    assert not box.is_displayed()
    assert "Nothing trending in this window yet" in view.text
    # Kept for the tab: another view reads the API with it.
    view = await in_thread(open_view, browser, base, "ai-share?genres=lofi&window=1h")
    assert view.get_attribute("data-state") == "empty", view.text
    assert chart_points(view, "#chart-ai-share") == [24]
