"""The built site in a real browser: headless Chromium, driven by Selenium (`make browser-test`).

Every page of the table of contents is loaded at 1280 and at 390 px wide from a local HTTP server
(127.0.0.1, started and stopped here), and must show no console error, render every expression
with MathJax, load every figure, never scroll sideways, and (on chapters) open a solution when
its toggle is clicked. Figure text must come out at 9 px or more at 1280 px and at 7 px or more
at 390 px. At 1280 px, no code cell, printed output or code block may be cut off at the right
edge, and a first visit to a page (an empty cache: the page, its scripts, styles, fonts and
images) may load at most 2 MB. A screenshot of every page and width goes to _build/screenshots/.

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
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from site_pages import HTML, ROOT, chapter_pages, require_site, toc_pages

from attention_book import plots

WIDTHS = (1280, 390)
HEIGHT = 900
#: The smallest figure text, in CSS px, at each width: a phone shows a little less.
MIN_TEXT_PX = {1280: 9.0, 390: 7.0}
#: A first visit to a page, with an empty cache, loads at most this many bytes.
PAGE_BUDGET_BYTES = 2_000_000
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


def page_check(page: str, width: int = WIDTHS[0]) -> Callable[[Callable], Callable]:
    """Register ``check(driver)`` for ``page`` (its path in _toc.yml, without suffix), run at
    ``width`` px."""
    assert page in toc_pages(), f"{page} is not in _toc.yml"
    assert width in WIDTHS, f"{width} is not one of {WIDTHS}"

    def register(check: Callable) -> Callable:
        check.widths = (*getattr(check, "widths", ()), width)
        if check not in PAGE_CHECKS.setdefault(page, []):
            PAGE_CHECKS[page].append(check)
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
    chrome.execute_cdp_cmd("Network.enable", {})
    chrome.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})  # first visits
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
    for src, ok, natural, shown in figures:
        path = (HTML / page).parent / urlsplit(src).path
        if ok and path.suffix == ".png" and path.exists():
            text_px = plots.MIN_FONT_PT / 72 * png_dpi(path) * shown / natural
            if text_px < MIN_TEXT_PX[width] - 0.05:
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

    if width == max(WIDTHS):
        problems += page_weight_problems(driver, site_url)
        if page in chapter_pages():
            problems += solution_toggle_problems(driver)  # before the toggles below open
            problems += code_overflow_problems(driver)
        problems += cut_off_problems(driver)
    for check in PAGE_CHECKS.get(page, []):
        if width in getattr(check, "widths", (max(WIDTHS),)):
            check(driver)

    driver.save_screenshot(str(SCREENSHOTS / f"{page.replace('/', '_')}-{width}.png"))
    assert not problems, f"{page} at {width} px:\n" + "\n".join(problems)


def page_weight_problems(driver, site_url: str) -> list[str]:
    """What a first visit loads: the page and every file it fetched, images included, sized as
    the site serves them (uncompressed), at most PAGE_BUDGET_BYTES."""
    loaded = driver.execute_script(
        """return [location.href,
            ...performance.getEntriesByType("resource").map(e => e.name),
            ...[...document.images].map(i => i.currentSrc || i.src)];"""
    )
    sizes = {}
    for address in loaded:
        if not address.startswith(site_url):
            continue  # only the site's own files; a request elsewhere is a console error
        path = HTML / unquote(urlsplit(address).path).lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if path.is_file():
            sizes[path] = path.stat().st_size
    total = sum(sizes.values())
    if total <= PAGE_BUDGET_BYTES:
        return []
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:4]
    listed = ", ".join(f"{p.relative_to(HTML)} {n / 1e6:.2f} MB" for p, n in largest)
    return [
        f"a first visit loads {total / 1e6:.2f} MB in {len(sizes)} files "
        f"(budget {PAGE_BUDGET_BYTES / 1e6:.1f} MB); the largest: {listed}"
    ]


def cut_off_problems(driver) -> list[str]:
    """Open every toggle: no printed output, code block or table may be cut off at the right
    edge. A box that scrolls sideways on purpose (a wide table or equation) must show that it
    does: it carries the ``scroll-frame`` class, whose styles draw its frame and a shadow."""
    wide = driver.execute_script(
        """document.querySelectorAll("article details").forEach(d => d.open = true);
        const boxes = [...document.querySelectorAll(
            "article pre, article table, article .output, article .cell_output > *")];
        return boxes.filter(b => !b.closest(".cell_input") && !b.closest(".scroll-frame"))
            .filter(b => b.getBoundingClientRect().width > 0)
            .filter(b => b.scrollWidth > b.clientWidth + 1)
            .map(b => [b.tagName.toLowerCase(), b.scrollWidth - b.clientWidth,
                b.textContent.split("\\n").reduce((a, c) => a.length >= c.length ? a : c)]);"""
    )
    return [
        f"a {tag} is cut off by {hidden} px, its longest line: {line[:100]!r}"
        for tag, hidden, line in wide
    ]


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


@page_check("notebooks/13_pretrained_encoder", width=390)
@page_check("notebooks/13_pretrained_encoder", width=1280)
def head_explorer_fits_and_works_from_the_keyboard(driver):
    """The explorer fits the column (nothing of it hidden), each list has its label, a key press
    on a focused list redraws the map, and the map's text stays at 7 px or more."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    explorer = driver.find_element(By.ID, "head-explorer")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", explorer)
    fit = driver.execute_script(
        """const box = arguments[0], r = box.getBoundingClientRect();
        const column = box.closest("article").getBoundingClientRect();
        const out = [...box.querySelectorAll("*")].filter(e => {
            const q = e.getBoundingClientRect();
            return q.width > 0 && !e.closest("svg *") && q.right > r.right + 1; })
            .map(e => e.tagName.toLowerCase() + "#" + e.id);
        return [r.right - column.right, box.scrollWidth - box.clientWidth, out];""",
        explorer,
    )
    assert fit[0] <= 1, f"the explorer reaches {fit[0]:.0f} px past the column"
    assert fit[1] <= 1 and not fit[2], f"the explorer hides {fit[1]} px: {fit[2]}"
    for name in ("sentence", "layer", "head"):
        select = driver.find_element(By.ID, f"head-explorer-{name}")
        labels = driver.execute_script(
            "return [...arguments[0].labels].map(l => l.textContent.trim());", select
        )
        assert labels == [name.capitalize()], f"the {name} list is labelled {labels}"
    svg = driver.find_element(By.ID, "head-explorer-map")
    before = svg.get_attribute("data-state")
    layer = driver.find_element(By.ID, "head-explorer-layer")
    layer.send_keys(Keys.ARROW_DOWN)  # a focused list moves to the next layer, and redraws
    after = driver.find_element(By.ID, "head-explorer-map").get_attribute("data-state")
    assert after != before and after.split("/")[1] == layer.get_attribute("value"), (before, after)
    text_px = driver.execute_script(
        """const svg = arguments[0], t = svg.querySelector("text");
        return svg.getBoundingClientRect().width / svg.viewBox.baseVal.width
            * parseFloat(t.getAttribute("font-size"));""",
        svg,
    )
    assert text_px >= MIN_TEXT_PX[390] - 0.05, f"the map's labels show at {text_px:.1f} px"
