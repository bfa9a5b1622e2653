"""Time every notebook, executed in a fresh kernel without writing it back.

The budget is 90 s per notebook on 2 CPU cores. Prints one JSON line:
{"benchmark": "notebook_times", "seconds": {...}, "max_seconds": ..., "within_budget": ...}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from nbtools import execute  # noqa: E402

BUDGET_S = 90.0


def main() -> None:
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    seconds = {}
    for path in paths:
        seconds[path.name] = round(execute(path, write=False), 1)
        print(f"{path.name}: {seconds[path.name]} s", file=sys.stderr, flush=True)
    worst = max(seconds.values(), default=0.0)
    result = {
        "benchmark": "notebook_times",
        "budget_s": BUDGET_S,
        "seconds": seconds,
        "max_seconds": worst,
        "within_budget": worst <= BUDGET_S,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
