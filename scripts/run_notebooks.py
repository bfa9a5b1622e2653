"""Re-execute notebooks in place, in a fresh kernel each, and clean their metadata.

Usage: python scripts/run_notebooks.py notebooks/*.ipynb   (or: make notebooks)
"""

from __future__ import annotations

import sys
from pathlib import Path

from nbtools import execute


def main(paths: list[str]) -> int:
    if not paths:
        print("usage: run_notebooks.py NOTEBOOK.ipynb [...]", file=sys.stderr)
        return 2
    for name in paths:
        path = Path(name)
        if not path.is_file():
            print(f"no such notebook: {path}", file=sys.stderr)
            return 2
        print(f"executing {path} ...", flush=True)
        seconds = execute(path)
        print(f"  done in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
