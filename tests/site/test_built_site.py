"""Checks of the built site (_build/html) as a reader gets it: `make site-check`, after the build.

Every page of the table of contents is checked, so a new chapter is covered once it is listed.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from site_pages import CONFIG, HTML, ROOT, chapter_pages, html_file, require_site, soup, toc_pages

REPO = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"].get("branch", "main")
ORG_REPO = urlsplit(REPO).path.strip("/")
COLAB = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
BINDER = CONFIG["launch_buttons"]["binderhub_url"].rstrip("/")

#: Where text may hold TeX: inside math, code and scripts.
NOT_PROSE = {"script", "style", "pre", "code", "textarea", "title"}
RAW_MATH = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|(?<![\w$])\$[^$\s][^$\n]*(?<!\s)\$(?![\w$])")
FILE_NAME = re.compile(r"^\S*\.(png|jpe?g|svg|gif|webp)$", re.IGNORECASE)
MIN_FIGURE_DPI = 150


@pytest.fixture(autouse=True)
def _site():
    require_site("BOOK_SITE_REQUIRED")


def links(page: str) -> list[tuple[str, str]]:
    """(tag, address) of every link, image, script and stylesheet on ``page``."""
    found = []
    for tag, attr in (("a", "href"), ("img", "src"), ("script", "src"), ("link", "href")):
        for element in soup(page).find_all(tag):
            if element.get(attr):
                found.append((tag, element[attr]))
    return found


def ids(path: Path) -> set[str]:
    page = path.relative_to(HTML).with_suffix("").as_posix()
    document = soup(page) if html_file(page) == path else None
    if document is None:  # a built page outside the table of contents (genindex, search)
        from bs4 import BeautifulSoup

        document = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    return {e["id"] for e in document.find_all(id=True)} | {
        e["name"] for e in document.find_all("a", attrs={"name": True})
    }


def png_dpi(path: Path) -> float | None:
    """The resolution a PNG file records (its pHYs chunk), in dots per inch."""
    data = path.read_bytes()
    at = data.find(b"pHYs")
    if at < 0:
        return None
    x_per_m, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    return x_per_m * 0.0254 if unit == 1 else None


@pytest.mark.parametrize("page", toc_pages())
def test_every_page_is_built(page):
    assert html_file(page).exists(), f"{page} is in _toc.yml but not in _build/html"


@pytest.mark.parametrize("page", chapter_pages())
def test_chapter_has_launch_repository_and_issue_buttons(page):
    hrefs = {a["href"] for a in soup(page).find_all("a", href=True)}
    notebook = f"{page}.ipynb"
    colab = f"{COLAB}/github/{ORG_REPO}/blob/{BRANCH}/{notebook}"
    binder = f"{BINDER}/v2/gh/{ORG_REPO}/{BRANCH}?urlpath=tree/{notebook}"
    assert colab in hrefs, f"no Colab button for {notebook}"
    assert binder in hrefs, f"no Binder button for {notebook}"
    assert REPO in hrefs, "no repository button"
    assert any(h.startswith(f"{REPO}/issues/new") for h in hrefs), "no 'open an issue' button"
    assert (ROOT / notebook).exists(), f"the launch buttons point at a missing {notebook}"


@pytest.mark.parametrize("page", toc_pages())
def test_no_broken_internal_link_anchor_or_image(page):
    here = html_file(page).parent
    broken = []
    for tag, address in links(page):
        parts = urlsplit(address)
        if parts.scheme or parts.netloc or address.startswith(("mailto:", "data:")):
            continue
        target = (here / unquote(parts.path)).resolve() if parts.path else html_file(page)
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(f"<{tag}> {address}: no such file")
        elif parts.fragment and target.suffix == ".html" and parts.fragment not in ids(target):
            broken.append(f"<{tag}> {address}: no such anchor")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("page", toc_pages())
def test_every_image_has_a_description_for_its_alt_text(page):
    article = soup(page).select_one("article") or soup(page)
    for img in article.find_all("img"):
        alt = (img.get("alt") or "").strip()
        assert alt, f"{img.get('src')} has no alt text"
        assert not FILE_NAME.match(alt), f"{img.get('src')}: alt text is a file name"
        assert len(alt.split()) >= 4, f"{img.get('src')}: alt text {alt!r} describes nothing"


@pytest.mark.parametrize("page", chapter_pages())
def test_figures_are_drawn_at_150_dpi_or_more(page):
    article = soup(page).select_one("article")
    here = html_file(page).parent
    for img in article.find_all("img"):
        path = (here / img["src"]).resolve()
        if path.suffix.lower() == ".png":
            dpi = png_dpi(path)
            assert dpi is not None and dpi >= MIN_FIGURE_DPI - 1, (
                f"{img['src']} is drawn at {dpi} dpi; call plots.use_book_style() first"
            )


@pytest.mark.parametrize("page", toc_pages())
def test_no_raw_tex_outside_math(page):
    article = soup(page).select_one("article") or soup(page)
    raw = []
    for text in article.find_all(string=True):
        parents = {p.name for p in text.parents}
        classes = {c for p in text.parents for c in (p.get("class") or [])}
        if parents & NOT_PROSE or "math" in classes:
            continue
        if RAW_MATH.search(text):
            raw.append(text.strip()[:120])
    assert not raw, "TeX left as text:\n" + "\n".join(raw)


@pytest.mark.parametrize("page", toc_pages())
def test_scripts_and_styles_are_served_by_the_site(page):
    remote = [a for tag, a in links(page) if tag in ("script", "link") and urlsplit(a).scheme]
    remote = [a for a in remote if not a.startswith(REPO)]
    assert not remote, f"loaded from the network, so missing offline: {remote}"
    mathjax = [a for tag, a in links(page) if tag == "script" and "mathjax" in a.lower()]
    if soup(page).select(".math"):
        assert mathjax, "a page with math loads no MathJax"
    for address in mathjax:
        path = (html_file(page).parent / urlsplit(address).path).resolve()
        assert path.is_file() and HTML in path.parents, f"MathJax is not local: {address}"
