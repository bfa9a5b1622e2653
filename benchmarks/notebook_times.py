"""Time notebooks, each executed in a fresh kernel without writing it back.

The budget is 90 s per notebook on 2 CPU cores. By default every notebook runs once, with the
book's default thread count. Options:

- ``--only 11 12``: only the notebooks whose names start with these prefixes;
- ``--threads 1 2``: run each notebook once per PyTorch thread count (through
  ``$ATTENTION_BOOK_THREADS``, which ``reproducibility.set_seed`` reads);
- ``--with-load``: also run each one while two busy processes compete for the CPU, as on a
  laptop doing other work, and report the slowdown against the run without them;
- ``--load N``: N busy processes compete for the CPU during every run (default 0), as in the
  other benchmarks (``common.cpu_load`` starts them).

Prints one JSON line, which records the 1-minute load average before and after:
{"benchmark": "notebook_times", "seconds": {notebook: {condition: s}}, "max_seconds": ...,
 "within_budget": ..., "slowdown_under_load": {...}, "within_2x_under_load": ...,
 "load_average_1min": [before, after], ...}
Exits 1 if a notebook at the default thread count misses the 90 s budget when idle, or runs
more than twice as long under load.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "src"))

from nbtools import execute  # noqa: E402

from attention_book import reproducibility  # noqa: E402

BUDGET_S = 90.0
MAX_SLOWDOWN = 2.0
LOAD_PROCESSES = 2  # a competing two-thread CPU load


def label(threads: int, loaded: bool) -> str:
    """The name of one condition, e.g. "2 threads, loaded"."""
    return f"{threads} thread{'s' if threads > 1 else ''}{', loaded' if loaded else ''}"


def run(path: Path, threads: int, loaded: bool) -> float:
    """Seconds to execute ``path`` with ``threads`` PyTorch threads, idle or under load."""
    os.environ[reproducibility.THREADS_ENV] = str(threads)
    with common.cpu_load(LOAD_PROCESSES if loaded else 0):
        return round(execute(path, write=False), 1)


def build_parser():
    """``--threads`` (here one count or several), ``--load``, ``--only`` and ``--with-load``."""
    parser = common.parser(__doc__, several_threads=True)
    parser.add_argument("--only", nargs="*", default=[], help="notebook name prefixes")
    parser.add_argument("--with-load", action="store_true", help="also time under CPU load")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    default = reproducibility.default_threads()
    thread_counts = args.threads
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name.startswith(tuple(args.only))]
    if not paths:
        parser.error(f"no notebook matches {args.only}")
    seconds: dict[str, dict[str, float]] = {}
    with common.cpu_load(args.load):
        load_before = common.load_average()
        for path in paths:
            times = seconds.setdefault(path.name, {})
            for threads in thread_counts:
                for loaded in (False, True) if args.with_load else (False,):
                    key = label(threads, loaded)
                    times[key] = run(path, threads, loaded)
                    print(f"{path.name} ({key}): {times[key]} s", file=sys.stderr, flush=True)
        load_after = common.load_average()
    # the budget applies to the default thread count, or to every count measured
    measured = default if default in thread_counts else thread_counts[0]
    idle = [t[label(measured, False)] for t in seconds.values()]
    worst = max(idle, default=0.0)
    result = {
        "benchmark": "notebook_times",
        "budget_s": BUDGET_S,
        "threads": thread_counts,
        "default_threads": default,
        "competing_processes": args.load,
        "load_average_1min": [load_before, load_after],
        "seconds": seconds,
        "max_seconds": worst,
        "within_budget": worst <= BUDGET_S,
    }
    ok = result["within_budget"]
    if args.with_load:
        result["slowdown_under_load"] = {
            name: {n: round(t[label(n, True)] / t[label(n, False)], 2) for n in thread_counts}
            for name, t in seconds.items()
        }
        result["within_2x_under_load"] = all(
            s[measured] <= MAX_SLOWDOWN for s in result["slowdown_under_load"].values()
        )
        ok = ok and result["within_2x_under_load"]
    print(json.dumps(result))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
