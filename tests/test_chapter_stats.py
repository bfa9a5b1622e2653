"""scripts/chapter_stats.py: the reading budget counts prose outside asides and visible asserts."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import chapter_stats  # noqa: E402

MARKDOWN = """# 1. Title
Two words.
:::{dropdown} An aside
Five words in the aside.
::::{admonition} Nested
Nested aside words here.
::::
:::
$$a + b = c$$
Back again.
"""


def test_prose_inside_asides_is_not_main_line():
    main, aside = chapter_stats.split_prose(MARKDOWN)
    assert chapter_stats.count_words(main) == 5  # Title, Two words, Back again
    assert chapter_stats.count_words(aside) == 9
    assert "Nested" not in main and "Back again" not in aside


def test_asserts_are_counted_by_visibility(tmp_path):
    cell = lambda src, tags: {"cell_type": "code", "source": src, "metadata": {"tags": tags}}
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": MARKDOWN, "metadata": {}},
            cell("x = 1\nassert x == 1\n  assert True", []),
            cell("assert x", ["remove-cell"]),
            cell("y = 2  # assert in a comment is not a statement", ["hide-input"]),
        ]
    }
    path = tmp_path / "01_t.ipynb"
    path.write_text(json.dumps(nb))
    stats = chapter_stats.chapter_stats(path)
    assert stats["main_words"] == 5 and stats["aside_words"] == 9
    assert stats["visible_asserts"] == 2 and stats["hidden_asserts"] == 1
    assert stats["visible_code_lines"] == 3


def test_max_words_fails_a_long_chapter(tmp_path, capsys):
    nb = {"cells": [{"cell_type": "markdown", "source": "word " * 30, "metadata": {}}]}
    path = tmp_path / "02_long.ipynb"
    path.write_text(json.dumps(nb))
    assert chapter_stats.main([str(path), "--max-words", "29"]) == 1
    assert "02_long: 30 main-line words > 29" in capsys.readouterr().out
    assert chapter_stats.main([str(path), "--max-words", "30"]) == 0
    assert chapter_stats.main([str(tmp_path / "missing.ipynb")]) == 2
