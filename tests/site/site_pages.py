"""What the built site should hold, read from _config.yml and _toc.yml: shared by the site checks
and the browser test, so that every page in the table of contents is checked, new chapters too."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def toc_pages() -> list[str]:
    """Every page of the book, as its path without suffix (``notebooks/04_scaling``)."""
    pages = [TOC["root"]]
    for part in TOC.get("parts", []):
        pages += [chapter["file"] for chapter in part["chapters"]]
    return pages


def chapter_pages() -> list[str]:
    """The pages made from notebooks: the ones with launch buttons."""
    return [page for page in toc_pages() if (ROOT / page).with_suffix(".ipynb").exists()]


def html_file(page: str) -> Path:
    return HTML / f"{page}.html"


def require_site(required_by: str) -> None:
    """Skip when no site is built, unless ``required_by`` (an environment variable) is set:
    `make site-check` and `make browser-test` set it, so there a missing site fails."""
    if not (HTML / "index.html").exists():
        message = "no built site in _build/html: run `make book-check` (or `make book`) first"
        if os.environ.get(required_by):
            pytest.fail(message)
        pytest.skip(message)


@functools.cache
def soup(page: str) -> BeautifulSoup:
    """The built page, parsed (once per test session)."""
    return BeautifulSoup(html_file(page).read_text(encoding="utf-8"), "html.parser")
