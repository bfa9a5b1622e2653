"""The built site in a real browser: headless Chromium, driven by Selenium (`make browser-test`).

Every page of the table of contents is loaded at 1280 and at 390 px wide from a local HTTP server
(127.0.0.1, started and stopped here), and must show no console error, render every expression
with MathJax, load every figure, never scroll sideways, and (on chapters) open a solution when
its toggle is clicked. At 1280 px, figure text must come out at 9 px or more and no code cell may
scroll sideways. A screenshot of every page and width goes to _build/screenshots/.

Checks for one page (an interactive widget, say) go in PAGE_CHECKS::

    @page_check("notebooks/13_pretrained_encoder")
    def head_explorer_switches_heads(driver):
        driver.find_element(By.ID, "head-explorer-layer").send_keys("2")
        assert "layer 2" in driver.find_element(By.ID, "head-explorer-title").text

Each runs after the generic checks of that page at 1280 px, with the page loaded.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from site_pages import HTML, ROOT, chapter_pages, require_site, toc_pages

from attention_book import plots

WIDTHS = (1280, 390)
HEIGHT = 900
MIN_TEXT_PX = 9.0
LOAD_TIMEOUT_S = 60
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)

#: page -> extra checks, each called with the WebDriver once the page is loaded at 1280 px.
PAGE_CHECKS: dict[str, list[Callable]] = {}


def page_check(page: str) -> Callable[[Callable], Callable]:
    """Register ``check(driver)`` for ``page`` (its path in _toc.yml, without suffix)."""
    assert page in toc_pages(), f"{page} is not in _toc.yml"

    def register(check: Callable) -> Callable:
        PAGE_CHECKS.setdefault(page, []).append(check)
        return check

    return register


def _find(env: str, names: tuple[str, ...], also: tuple[str, ...] = ()) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        if found := shutil.which(name):
            return found
    return next((p for p in also if Path(p).is_file()), None)


def chromium_and_driver() -> tuple[str, str]:
    """Paths of the browser and its driver: $CHROME_BIN and $CHROMEDRIVER, else the PATH."""
    browser = _find("CHROME_BIN", ("chromium", "chromium-browser", "google-chrome", "chrome"))
    webdriver_dir = os.environ.get("CHROMEWEBDRIVER", "")  # where GitHub's runners keep it
    driver = _find("CHROMEDRIVER", ("chromedriver",), (f"{webdriver_dir}/chromedriver",))
    if not browser or not driver:
        pytest.fail(
            "no Chromium and chromedriver: `apt-get install chromium chromium-driver` "
            "(or set CHROME_BIN and CHROMEDRIVER)"
        )
    return browser, driver


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output for failures
        pass


@pytest.fixture(scope="module")
def site_url():
    require_site("BOOK_BROWSER_TEST")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def driver(site_url):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = chromium_and_driver()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="book-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WIDTHS[0]},{HEIGHT}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    chrome.set_page_load_timeout(LOAD_TIMEOUT_S)
    chrome.set_script_timeout(LOAD_TIMEOUT_S)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield chrome
    chrome.quit()
    shutil.rmtree(profile, ignore_errors=True)


def png_dpi(path: Path) -> float:
    data = path.read_bytes()
    at = data.find(b"pHYs")
    if at < 0:
        return 72.0  # a PNG without a resolution is shown as if drawn at 72 dpi
    x_per_m, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    return x_per_m * 0.0254 if unit == 1 else 72.0


def load(driver, url: str, width: int) -> None:
    """Open ``url`` in a viewport ``width`` px wide; wait for the page and for MathJax."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    driver.get_log("browser")  # forget what the previous page logged
    driver.get(url)
    driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const images = () => Promise.all([...document.images].map(i => i.decode().catch(() => 0)));
        const math = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
            ? MathJax.startup.promise : Promise.resolve();
        const ready = () => document.readyState === "complete"
            ? Promise.resolve() : new Promise(r => addEventListener("load", r));
        ready().then(math).then(images).then(() => done(true), e => done(String(e)));"""
    )


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", toc_pages())
def test_page_in_a_real_browser(driver, site_url, page, width):
    url = urljoin(site_url, f"{page}.html")
    load(driver, url, width)
    problems = []

    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    problems += [f"console error: {message}" for message in errors]

    math = driver.execute_script(
        """const all = [...document.querySelectorAll("article .math")];
        const done = all.filter(
            m => m.querySelector("mjx-container") && !m.querySelector("mjx-merror"));
        return [all.length, done.length, all.filter(m => !done.includes(m)).slice(0, 3)
            .map(m => m.textContent.slice(0, 60))];"""
    )
    if math[1] != math[0]:
        problems.append(f"MathJax rendered {math[1]} of {math[0]} expressions; not: {math[2]}")

    figures = driver.execute_script(
        """return [...document.querySelectorAll("article img")].map(i => [i.getAttribute("src"),
            i.complete && i.naturalWidth > 0, i.naturalWidth, i.getBoundingClientRect().width]);"""
    )
    problems += [f"figure not loaded: {src}" for src, ok, *_ in figures if not ok]
    if width == max(WIDTHS):
        for src, ok, natural, shown in figures:
            path = (HTML / page).parent / urlsplit(src).path
            if ok and path.suffix == ".png" and path.exists():
                text_px = plots.MIN_FONT_PT / 72 * png_dpi(path) * shown / natural
                if text_px < MIN_TEXT_PX - 0.05:
                    problems.append(f"{src}: its smallest text shows at {text_px:.1f} px")

    overflow = driver.execute_script(
        """const view = document.documentElement.clientWidth;
        const wide = [...document.querySelectorAll("body *")].filter(e => {
            const r = e.getBoundingClientRect(); return r.width > 0 && r.right > view + 1; });
        const outer = wide.filter(e => !wide.includes(e.parentElement)).slice(0, 3)
            .map(e => e.tagName + "." + e.className + ": " + (e.textContent || "").slice(0, 60));
        return [document.documentElement.scrollWidth, view, outer];"""
    )
    if overflow[0] > overflow[1]:
        problems.append(
            f"the page scrolls sideways: {overflow[0]} > {overflow[1]} px: {overflow[2]}"
        )

    if page in chapter_pages() and width == max(WIDTHS):
        problems += solution_toggle_problems(driver)
        problems += code_overflow_problems(driver)
        for check in PAGE_CHECKS.get(page, []):
            check(driver)

    driver.save_screenshot(str(SCREENSHOTS / f"{page.replace('/', '_')}-{width}.png"))
    assert not problems, f"{page} at {width} px:\n" + "\n".join(problems)


def code_overflow_problems(driver) -> list[str]:
    """Open every toggle: no code cell may scroll sideways on a wide page (80 characters fit)."""
    wide = driver.execute_script(
        """document.querySelectorAll("article details").forEach(d => d.open = true);
        return [...document.querySelectorAll("article div.cell_input pre")]
            .filter(p => p.scrollWidth > p.clientWidth + 1)
            .map(p => p.textContent.split("\\n").reduce((a, b) => a.length >= b.length ? a : b));"""
    )
    return [f"a code cell scrolls sideways, its longest line: {line!r}" for line in wide]


def solution_toggle_problems(driver) -> list[str]:
    """Click the last solution's toggle: its code must appear, and the toggle names it."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    toggles = driver.find_elements(By.CSS_SELECTOR, ".tag_hide-cell details.hide > summary")
    if not toggles:
        return ["no solution toggle on a chapter page"]
    # Asides may hide their code too; the solutions follow them, after the exercises.
    summary = toggles[-1]
    details = summary.find_element(By.XPATH, "..")
    code = details.find_element(By.CSS_SELECTOR, ".cell_input")
    problems = []
    if code.is_displayed():
        problems.append("a solution's code shows before its toggle is clicked")
    label = summary.text.strip()
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", summary)
    summary.click()
    try:
        WebDriverWait(driver, 5).until(lambda _: code.is_displayed() and code.size["height"] > 0)
    except TimeoutException:
        problems.append("clicking a solution toggle does not show its code")
    if "exercise" not in label.lower():
        problems.append(f"the solution toggle reads {label!r}: say which exercise it solves")
    return problems


@page_check("notebooks/13_pretrained_encoder")
def head_explorer_switches_heads(driver):
    """Choosing another layer and head in chapter 13's explorer redraws its attention map."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    svg = driver.find_element(By.ID, "head-explorer-map")
    assert svg.get_attribute("data-state") == "0/3/1", svg.get_attribute("data-state")
    before = svg.get_attribute("innerHTML")
    Select(driver.find_element(By.ID, "head-explorer-layer")).select_by_value("4")
    Select(driver.find_element(By.ID, "head-explorer-head")).select_by_value("0")
    svg = driver.find_element(By.ID, "head-explorer-map")
    assert svg.get_attribute("data-state") == "0/4/0", svg.get_attribute("data-state")
    assert svg.get_attribute("innerHTML") != before, "the map did not change"
    cells = svg.find_elements(By.TAG_NAME, "rect")
    assert len(cells) >= 13 * 13, len(cells)
    caption = driver.find_element(By.ID, "head-explorer-caption").text
    assert caption.startswith("L4H0"), caption
