"""Hygiene of the committed notebooks: what strict nbval and the book build rely on."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def toc_files() -> list[str]:
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no chapter"


def test_toc_lists_every_notebook_in_order_and_nothing_missing():
    listed = [f for f in toc_files() if f.startswith("notebooks/")]
    assert listed == [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    for f in toc_files():
        assert (ROOT / f).with_suffix(".md").exists() or (ROOT / f).with_suffix(
            ".ipynb"
        ).exists(), f


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_executed(path):
    nb = load(path)
    assert re.fullmatch(r"\d\d_[a-z0-9_]+|appendix_[a-z0-9_]+", path.stem), (
        "name notebooks NN_short_name.ipynb (appendix_short_name.ipynb for an appendix)"
    )
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), (
        "execute top to bottom in a fresh kernel: make notebook NB=" + str(path.relative_to(ROOT))
    )
    for cell in nb["cells"]:
        assert set(cell.get("metadata", {})) <= {"tags", "mystnb"}, "clean cell metadata"
        outputs = cell.get("outputs", [])
        assert all(o["output_type"] != "error" for o in outputs), "a committed cell shows an error"
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_colab_cell_title_and_seed(path):
    cells = load(path)["cells"]
    first = cells[0]
    assert first["cell_type"] == "code"
    assert {"remove-cell", "nbval-ignore-output"} <= set(first["metadata"].get("tags", []))
    assert CONFIG["repository"]["url"] in "".join(first["source"]), "Colab cell installs this repo"
    title = "".join(cells[1]["source"]).splitlines()[0]
    # a chapter's title starts with its number; an appendix's with "Appendix"
    heading = "# Appendix: " if path.stem.startswith("appendix_") else f"# {int(path.stem[:2])}. "
    assert cells[1]["cell_type"] == "markdown" and title.startswith(heading), title
    first_code = next(c for c in cells[2:] if c["cell_type"] == "code")
    assert "reproducibility.set_seed(" in "".join(first_code["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ignored_outputs_are_followed_by_an_assertion(path):
    code = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    for i, cell in enumerate(code[1:-1], start=1):
        if "nbval-ignore-output" in cell["metadata"].get("tags", []):
            after = "".join(code[i + 1]["source"])
            assert "assert" in after, (
                f"code cell {i + 1} is exempt from nbval; the next must assert"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_ends_with_summary_and_exercises(path):
    text = "\n".join(
        "".join(c["source"]) for c in load(path)["cells"] if c["cell_type"] == "markdown"
    )
    assert "## Summary" in text and "## Exercises" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_solutions_hide_code_and_answer(path):
    cells = load(path)["cells"]
    start = next(
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown" and "## Exercises" in "".join(c["source"])
    )
    # a check hidden from the page (remove-cell) may follow a solution
    solutions = [
        c
        for c in cells[start:]
        if c["cell_type"] == "code" and "remove-cell" not in c["metadata"].get("tags", [])
    ]
    assert solutions, "the exercises need solutions"
    for cell in solutions:
        tags = cell["metadata"].get("tags", [])
        assert "hide-cell" in tags, (
            "solution cells are tagged hide-cell, so the answer stays hidden"
        )


#: The page shows about 80 characters of code; longer lines hide behind a scrollbar.
MAX_CODE_LINE = 80


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_the_page(path):
    for n, cell in enumerate(load(path)["cells"]):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or "remove-cell" in tags:  # the hidden Colab cell
            continue
        for line in "".join(cell["source"]).splitlines():
            assert len(line) <= MAX_CODE_LINE, (
                f"cell {n}: a line of {len(line)} characters (at most {MAX_CODE_LINE}): {line}"
            )


def image_cells(nb: dict) -> list[dict]:
    return [
        c
        for c in nb["cells"]
        if c["cell_type"] == "code"
        and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_alt_text(path):
    for cell in image_cells(load(path)):
        alt = cell["metadata"].get("mystnb", {}).get("image", {}).get("alt", "")
        assert len(alt.split()) >= 6, (
            'describe the figure in the cell\'s alt text (alt="..." on the marker line): '
            + "".join(cell["source"])[:80]
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_use_the_house_style(path):
    nb = load(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    source = "\n".join("".join(c["source"]) for c in code)
    if image_cells(nb) or "plt." in source:
        first = next(c for c in nb["cells"][2:] if c["cell_type"] == "code")
        assert "plots.use_book_style()" in "".join(first["source"]), (
            "call plots.use_book_style() in the first code cell"
        )
    from attention_book import plots

    for size in re.findall(r"fontsize\s*=\s*([\d.]+)", source):
        assert float(size) >= plots.MIN_FONT_PT, f"fontsize={size} is below the house minimum"
    small = re.findall(r"""(?:fontsize|size)\s*=\s*["'](x*-?small)["']""", source)
    assert not small, f"font sizes {small} are below the house minimum"
    for line in source.splitlines():
        if "rcParams" in line and ("dpi" in line or "size" in line):
            raise AssertionError(f"plots.use_book_style() sets sizes and dpi, not: {line}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_solution_toggles_name_their_exercise(path):
    cells = load(path)["cells"]
    start = next(
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown" and "## Exercises" in "".join(c["source"])
    )
    for cell in cells[start:]:
        if cell["cell_type"] == "code" and "remove-cell" not in cell["metadata"].get("tags", []):
            prompt = cell["metadata"].get("mystnb", {}).get("code_prompt_show", "")
            assert "exercise" in prompt.lower(), (
                'name the exercise in the toggle: mystnb: code_prompt_show: "Show the '
                'solution to exercise 1" (prompt="..." on the marker line)'
            )


#: Words that describe how the book is tested, not what a chapter teaches. Chapter prose says
#: what a check shows the reader ("the next cell checks that ..."); the machinery is explained
#: once, in book/testing.md. Code comments and cell tags may name it.
TEST_SUITE_WORDS = (
    "nbval",
    "CI",
    "pytest",
    "test suite",
    "the bar",
    "printout",
    "printouts",
    "stable printout",
    "stored output",
    "stored outputs",
    "strict",
    "the figure the chapter has to reach",
)
TEST_SUITE_LANGUAGE = re.compile(
    r"\b(" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in TEST_SUITE_WORDS) + r")\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_prose_speaks_to_the_reader_not_the_test_suite(path):
    found = []
    for n, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for match in TEST_SUITE_LANGUAGE.finditer(text):
            start, end = max(match.start() - 40, 0), match.end() + 40
            context = " ".join(text[start:end].split())
            found.append(f"cell {n}: {match.group(0)!r} in '...{context}...'")
    assert not found, (
        f"{path.name}: chapter prose names the test machinery (say what the check shows the "
        "reader instead; book/testing.md explains the machinery):\n" + "\n".join(found)
    )
