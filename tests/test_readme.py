"""The README as a newcomer meets it: the site's address first, derived from the repository's
address in _config.yml, the licences, and counts that match the book."""

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def pages_address() -> str:
    """GitHub Pages' address of the repository in _config.yml: https://OWNER.github.io/NAME/."""
    owner, name = urlsplit(CONFIG["repository"]["url"]).path.strip("/").split("/")[:2]
    return f"https://{owner.lower()}.github.io/{name}/"


def test_the_readme_leads_with_the_sites_address():
    first_link = re.search(r"https?://[^\s)>]+", README).group(0)
    assert first_link == pages_address()
    intro = (ROOT / "book" / "intro.md").read_text()
    assert pages_address() in intro and CONFIG["repository"]["url"] in intro


def test_licences_are_there_and_stated():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "creativecommons.org/licenses/by/4.0" in (ROOT / "LICENSE-TEXT").read_text()
    head = README[: README.index("## ")]
    assert "CC BY 4.0" in head and "MIT" in head
    assert "CC BY 4.0" in (ROOT / "book" / "intro.md").read_text()


def test_counts_match_the_book():
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    words = {
        12: "twelve",
        13: "thirteen",
        14: "fourteen",
        15: "fifteen",
        16: "sixteen",
        17: "seventeen",
    }
    assert f"all {words[len(notebooks)]} notebooks" in README
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README):
        assert (ROOT / image).is_file(), f"the README shows a missing {image}"
