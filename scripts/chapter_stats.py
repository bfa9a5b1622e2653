"""The reading budget of every chapter: main-line words and the checks a reader sees.

Usage: python scripts/chapter_stats.py [--max-words 2500] [notebooks/*.ipynb]

For each notebook it prints one row of a Markdown table:

* main words: prose outside asides (``dropdown``, ``admonition``, ``margin``, ``aside`` and
  ``sidebar`` blocks), display math left out; a reader takes about 20 minutes for 2,500;
* aside words: prose inside those blocks;
* visible / hidden asserts: ``assert`` statements in code cells whose input the page shows, and in
  cells it hides (tags ``remove-cell``, ``remove-input``, ``hide-input``, ``hide-cell``);
* code lines: lines of code a reader sees on the page.

With ``--max-words N`` it exits 1 when a chapter's main line is longer than N words.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ASIDES = ("dropdown", "admonition", "margin", "aside", "sidebar")
HIDDEN = {"remove-cell", "remove-input", "hide-input", "hide-cell"}
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
FENCE = re.compile(r"^\s*(:{3,}|`{3,})\{?([\w-]*)\}?")


def split_prose(markdown: str) -> tuple[str, str]:
    """Split markdown into (main line, asides); nested asides count as asides."""
    main, aside, stack = [], [], []
    for line in markdown.splitlines():
        m = FENCE.match(line)
        if m and m.group(2) in ASIDES:
            stack.append(m.group(1))
            continue
        if stack and re.match(r"^\s*" + re.escape(stack[-1]) + r"\s*$", line):
            stack.pop()
            continue
        (aside if stack else main).append(line)
    return "\n".join(main), "\n".join(aside)


def count_words(text: str) -> int:
    """Words of prose, display math ($$ ... $$) left out."""
    return len(WORD.findall(re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)))


def count_asserts(source: str) -> int:
    """Lines that start an ``assert`` statement."""
    return sum(1 for line in source.splitlines() if re.match(r"^\s*assert\b", line))


def chapter_stats(path: Path) -> dict[str, int | str]:
    """The budget figures of one notebook."""
    cells = json.loads(path.read_text())["cells"]
    md = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    main, aside = split_prose(md)
    stats: dict[str, int | str] = {
        "chapter": path.stem,
        "main_words": count_words(main),
        "aside_words": count_words(aside),
        "visible_asserts": 0,
        "hidden_asserts": 0,
        "visible_code_lines": 0,
    }
    for c in cells:
        if c["cell_type"] != "code":
            continue
        src = "".join(c["source"])
        hidden = bool(HIDDEN & set(c.get("metadata", {}).get("tags", [])))
        stats["hidden_asserts" if hidden else "visible_asserts"] += count_asserts(src)
        if not hidden:
            stats["visible_code_lines"] += sum(1 for line in src.splitlines() if line.strip())
    return stats


def table(rows: list[dict[str, int | str]]) -> str:
    """A Markdown table of the rows."""
    head = "| chapter | main words | aside words | visible asserts | hidden asserts | code lines |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| `{r['chapter']}` | {r['main_words']:,} | {r['aside_words']:,} | "
            f"{r['visible_asserts']} | {r['hidden_asserts']} | {r['visible_code_lines']} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--max-words", type=int, default=None)
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(Path("notebooks").glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = [chapter_stats(p) for p in paths]
    print(table(rows))
    if args.max_words is not None:
        over = [r for r in rows if int(r["main_words"]) > args.max_words]
        for r in over:
            print(f"{r['chapter']}: {r['main_words']} main-line words > {args.max_words}")
        return 1 if over else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
