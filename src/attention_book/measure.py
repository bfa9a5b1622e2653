"""Measuring calls: the peak memory they allocate, the time they take, and how both grow.

Memory is read from PyTorch's own allocator: ``torch.profiler`` with ``profile_memory=True``
records every allocation and free with its size and time, so the peak is measured, not
predicted from a formula. It counts tensor memory only (not Python objects or the allocator's
spare pages), which is what attention's T x S matrices occupy.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from attention_book import validation


def peak_memory(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Peak bytes of CPU tensor memory that ``fn(*args, **kwargs)`` holds above what existed before.

    Tensors alive before the call (its inputs) are not counted; what the call returns is.

    Args:
        fn: the function to run once, on CPU tensors.
        *args, **kwargs: its arguments.

    Returns:
        The largest number of bytes allocated and not yet freed at any moment during the call,
        at least 0.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    # Kineto, the profiler's engine, logs each start and stop to stderr; 6 is above its top level.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn(*args, **kwargs)
    del result  # freed after the profile ended, so it stays counted
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    held = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        held += e.nbytes()  # positive for an allocation, negative for a free
        peak = max(peak, held)
    return peak


def time_calls(
    calls: Mapping[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median wall-clock seconds of each call, with the runs interleaved.

    The calls take turns (a, b, c, a, b, c, ...), so that a burst of background load on a shared
    machine slows all of them alike, and the median resists the bursts that remain.

    Args:
        calls: name -> a function of no arguments.
        repeat: timed rounds, a positive int; warmup: untimed rounds first, at least 0.

    Returns:
        name -> median duration in seconds.
    """
    for name, fn in calls.items():
        if not callable(fn):
            raise TypeError(f"calls[{name!r}] must be callable, got {type(fn).__name__}")
    validation.check_positive_int("repeat", repeat)
    warmup = validation.check_non_negative_int("warmup", warmup)
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    durations: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            durations[name].append(time.perf_counter() - start)
    return {name: statistics.median(d) for name, d in durations.items()}


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y against log x: the p in y ~ c x^p.

    Args:
        xs, ys: at least two positive numbers each, the same count, not all xs equal.

    Returns:
        The fitted exponent p.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need two equal-length sequences of at least 2, got {len(xs)}, {len(ys)}")
    xs = [validation.check_number("each x", x) for x in xs]
    ys = [validation.check_number("each y", y) for y in ys]  # NaN or inf: an error, not NaN
    if min(xs) <= 0 or min(ys) <= 0:
        raise ValueError("loglog_slope needs positive xs and ys")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    sxx = sum((x - mx) ** 2 for x in lx)
    if sxx == 0:
        raise ValueError("loglog_slope needs at least two different xs")
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / sxx


def memory_bandwidth(num_bytes: int = 2**28, repeat: int = 5) -> float:
    """This machine's memory bandwidth in GB/s, from copies of a large buffer.

    A copy of ``num_bytes`` reads them and writes them, so it moves ``2 * num_bytes``; the
    buffer is far larger than the processor's caches, so the bytes come from memory.

    Args:
        num_bytes: the size of the buffer copied (default 256 MiB).
        repeat: timed copies, a positive int; the median is kept.

    Returns:
        Bytes moved per second, in units of 10^9.
    """
    num_bytes = validation.check_positive_int("num_bytes", num_bytes)
    validation.check_positive_int("repeat", repeat)
    src = torch.ones(max(1, num_bytes // 4))  # float32: 4 bytes each
    dst = torch.empty_like(src)
    seconds = time_calls({"copy": lambda: dst.copy_(src)}, repeat=repeat)["copy"]
    return 2 * src.numel() * 4 / seconds / 1e9
