"""What the benchmarks share: the thread count, the competing load, and how both are recorded.

Every script in ``benchmarks/`` takes ``--threads N``, PyTorch's intra-op thread count, whose
default is the book's policy (``reproducibility.default_threads()``: one thread, unless
``$ATTENTION_BOOK_THREADS`` says otherwise), and ``--load N``, the number of busy processes that
compete for the CPU while it runs (default 0). Its JSON line records the thread count, the
competing processes and the 1-minute load average before and after the measurement, so that a
number is never read without the conditions it was taken under. A bar is judged at the default
thread count (``make bench`` fails only there); other counts are reported for comparison.

This module is not a benchmark: ``make bench`` skips it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attention_book import reproducibility  # noqa: E402


def positive_int(text: str) -> int:
    """``text`` as an int of at least 1, or an argparse error that names it."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def non_negative_int(text: str) -> int:
    """``text`` as an int of at least 0, or an argparse error that names it."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return int(text)


def parser(doc: str | None, several_threads: bool = False) -> argparse.ArgumentParser:
    """An argument parser with ``--threads`` and ``--load``, described by a script's docstring.

    Args:
        doc: the script's docstring; its first line describes the command.
        several_threads: ``--threads`` takes one or more counts and gives a list (the default is
            then ``[default]``), for a script that compares thread counts in one run.
    """
    p = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    default = reproducibility.default_threads()
    p.add_argument(
        "--threads",
        type=positive_int,
        nargs="+" if several_threads else None,
        default=[default] if several_threads else default,
        help=f"PyTorch intra-op threads (default {default}, the book's policy)",
    )
    p.add_argument(
        "--load",
        type=non_negative_int,
        default=0,
        help="busy processes that compete for the CPU during the run (default 0)",
    )
    return p


@contextmanager
def cpu_load(processes: int) -> Iterator[list[subprocess.Popen]]:
    """Run ``processes`` busy loops (one core each) for the duration of the block.

    Each loop also ends by itself when this process dies (its parent changes), so a benchmark
    that is killed does not leave a busy process behind.
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
        raise ValueError(f"processes must be a non-negative int, got {processes!r}")
    # The parent's pid is passed in, not read by the loop: a parent that dies before the loop
    # starts would otherwise be mistaken for the new one, and the loop would never end.
    loop = "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent: pass"
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", loop, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        yield busy
    finally:
        for p in busy:
            p.kill()
            p.wait()


def load_average() -> float:
    """The machine's 1-minute load average, rounded to 0.01."""
    return round(os.getloadavg()[0], 2)


@contextmanager
def conditions(threads: int, load: int = 0) -> Iterator[dict]:
    """Set PyTorch's thread count, start ``load`` competing processes, and record both.

    Yields a dict that holds ``threads``, ``default_threads`` and ``competing_processes`` at once
    and, when the block ends, ``load_average_1min``: ``[before, after]``, the second read while
    the competing processes still run. Raises RuntimeError if something inside the block changed
    the thread count (``reproducibility.set_seed`` without ``threads=`` does), since the record
    would then be false.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    torch.set_num_threads(threads)
    record: dict = {
        "threads": threads,
        "default_threads": reproducibility.default_threads(),
        "competing_processes": load,
    }
    with cpu_load(load):
        before = load_average()
        yield record
        record["load_average_1min"] = [before, load_average()]
    if torch.get_num_threads() != threads:
        raise RuntimeError(
            f"the benchmark asked for {threads} threads but ran with {torch.get_num_threads()}"
        )
