"""Seeding and thread control, so that every notebook prints the same numbers on every run."""

from __future__ import annotations

import numbers
import os
import random

import numpy as np
import torch

from attention_book import validation

DEFAULT_SEED = 0
DEFAULT_THREADS = 1
#: An environment variable that changes the default thread count (benchmarks use it).
THREADS_ENV = "ATTENTION_BOOK_THREADS"
#: NumPy's legacy generator takes seeds below 2**32; the other generators take them all.
MAX_SEED = 2**32 - 1


def default_threads() -> int:
    """``DEFAULT_THREADS``, or the positive count that ``$ATTENTION_BOOK_THREADS`` names."""
    value = os.environ.get(THREADS_ENV)
    if value is None:
        return DEFAULT_THREADS
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    return int(value)


def set_seed(seed: int = DEFAULT_SEED, threads: int | None = None) -> None:
    """Seed Python, NumPy and PyTorch, and set PyTorch's CPU threads (default: one).

    On a busy two-core machine two threads spin-wait on each other and run several times slower;
    a fixed count also fixes the order of floating-point reductions."""
    # Check both arguments before touching any global state, so a bad call changes nothing.
    seed = validation.check_non_negative_int("seed", seed)
    if seed > MAX_SEED:
        raise ValueError(f"seed must be at most 2**32 - 1 = {MAX_SEED} (NumPy's limit), got {seed}")
    if threads is None:
        threads = default_threads()
    threads = validation.check_positive_int("threads", threads)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global stream that plain np.random uses
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def rounded(x: torch.Tensor | float | list, digits: int = 4) -> float | list:
    """Python floats (nested lists for tensors) rounded to ``digits`` decimals, without float32
    noise such as ``0.23999999463558197``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().tolist()
    if isinstance(x, list | tuple):
        return [rounded(v, digits) for v in x]
    digits = validation.check_int("digits", digits)  # digits=True is not 1
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"rounded expects a tensor, a number or a list, got {type(x).__name__}")
    value = round(float(x), digits)
    return 0.0 if value == 0 else value  # no "-0.0"
