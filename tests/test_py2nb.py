"""scripts/py2nb.py: the percent-script markers become the cell metadata the book reads."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import py2nb  # noqa: E402

SCRIPT = """# %% [markdown]
# # 1. Title
# %% tags=["hide-cell"] alt="A \\"quoted\\" plot" prompt="the solution to exercise 2"
print(1)
# %% alt="Only alt text"
print(2)
"""


def test_markers_become_tags_alt_text_and_toggle_prompts():
    nb = py2nb.convert(SCRIPT)
    title, solution, figure = nb.cells
    assert title.cell_type == "markdown" and title.source == "# 1. Title"
    assert solution.metadata["tags"] == ["hide-cell"]
    assert solution.metadata["mystnb"] == {
        "image": {"alt": 'A "quoted" plot'},
        "code_prompt_show": "Show the solution to exercise 2",
        "code_prompt_hide": "Hide the solution to exercise 2",
    }
    assert figure.metadata == {"mystnb": {"image": {"alt": "Only alt text"}}}
    assert figure.source == "print(2)"
