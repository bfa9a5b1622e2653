"""Turn a percent-format script into an unexecuted notebook (an authoring aid).

Cells start at lines beginning with ``# %%``; ``# %% [markdown]`` starts a markdown cell whose
lines lose their leading ``# ``. Tags go on the marker line: ``# %% tags=["remove-cell"]``.
A figure's alt text goes there too, after any tags: ``# %% alt="Two curves that cross at T = 64"``;
MyST-NB reads it from the cell metadata ``mystnb: image: alt``. A solution cell names its exercise
in its toggle with ``prompt="the solution to exercise 2"`` (after any alt): the book then shows
"Show the solution to exercise 2" (``mystnb: code_prompt_show`` and ``code_prompt_hide``).

Usage: python scripts/py2nb.py chapter.py notebooks/NN_name.ipynb
Then execute it with: make notebook NB=notebooks/NN_name.ipynb
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

STRING = r'"(?:[^"\\]|\\.)*"'  # a JSON string
MARKER = re.compile(
    r"^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*?\]))?"
    rf"(?:\s+alt=(?P<alt>{STRING}))?(?:\s+prompt=(?P<prompt>{STRING}))?\s*$"
)


def convert(text: str) -> nbformat.NotebookNode:
    """Split ``text`` at ``# %%`` markers into notebook cells."""
    nb = nbformat.v4.new_notebook()
    cells: list[tuple[bool, list[str], str | None, str | None, list[str]]] = []
    for line in text.splitlines():
        match = MARKER.match(line)
        if match:
            tags = json.loads(match["tags"]) if match["tags"] else []
            alt = json.loads(match["alt"]) if match["alt"] else None
            prompt = json.loads(match["prompt"]) if match["prompt"] else None
            cells.append((bool(match["md"]), tags, alt, prompt, []))
        elif cells:
            cells[-1][4].append(line)
    for is_md, tags, alt, prompt, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if is_md:
            source = "\n".join(re.sub(r"^# ?", "", line) for line in lines)
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines))
        if tags:
            cell.metadata["tags"] = tags
        if alt:
            cell.metadata.setdefault("mystnb", {})["image"] = {"alt": alt}
        if prompt:
            cell.metadata.setdefault("mystnb", {}).update(
                code_prompt_show=f"Show {prompt}", code_prompt_hide=f"Hide {prompt}"
            )
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    nb = convert(Path(argv[0]).read_text())
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat_minor = 4
    nbformat.write(nb, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
