"""Forward plus backward of MultiHeadAttention against torch.nn.MultiheadAttention.

Self-attention at B=32, T=128, D=256, H=8 on the CPU, with ``--threads`` PyTorch threads (default:
the book's one). The two modules hold the same weights (``interop.from_torch``).
Repeats are interleaved (ours, torch, ours, ...) so that all runs see the same background load,
and the medians are compared.

The bar applies to the fused path (``need_weights=False``): ours takes at most 1.15 times torch's
time. The explicit path (``need_weights=True``, which materialises the ``(B, H, T, S)`` weights)
is timed against torch's path with weights too, for information only. Prints one JSON line last
(with the thread count and the load average) and exits with status 1 if the bar is missed.

Usage: python benchmarks/multihead_vs_torch.py [--threads N] [--load N]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import common
import torch
from torch import nn

from attention_book import interop

B, T, D, H = 32, 128, 256, 8
WARMUP, REPEATS = 3, 20
BAR = 1.15


def _step_time(forward: Callable[[], torch.Tensor]) -> float:
    """Seconds for one forward and backward pass."""
    start = time.perf_counter()
    out = forward()
    out.sum().backward()
    return time.perf_counter() - start


def measure() -> dict[str, list[float]]:
    """Seconds per forward and backward pass of each of the four paths, interleaved."""
    ref = nn.MultiheadAttention(D, H, batch_first=True)
    ours = interop.from_torch(ref)
    x = torch.randn(B, T, D, requires_grad=True)
    runs: dict[str, Callable[[], torch.Tensor]] = {
        "ours_fused": lambda: ours(x, x, x, need_weights=False)[0],
        "torch_fused": lambda: ref(x, x, x, need_weights=False)[0],
        "ours_explicit": lambda: ours(x, x, x, need_weights=True)[0],
        "torch_explicit": lambda: ref(x, x, x, need_weights=True, average_attn_weights=False)[0],
    }
    for run in runs.values():  # the same function is being timed four ways
        torch.testing.assert_close(run(), runs["torch_fused"]())
    for _ in range(WARMUP):
        for run in runs.values():
            _step_time(run)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, run in runs.items():
            times[name].append(_step_time(run))
            for p in (*ours.parameters(), *ref.parameters(), x):
                p.grad = None
    return times


def build_parser():
    """The command line: ``--threads`` and ``--load`` (see ``common``)."""
    return common.parser(__doc__)


def main() -> int:
    args = build_parser().parse_args()
    torch.manual_seed(0)
    with common.conditions(args.threads, args.load) as conditions:
        times = measure()
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    ratio = ms["ours_fused"] / ms["torch_fused"]
    result = {
        "benchmark": "multihead_vs_torch",
        "shape": {"B": B, "T": T, "D": D, "H": H},
        **conditions,
        "repeats": REPEATS,
        "ours_ms": round(ms["ours_fused"], 3),
        "torch_ms": round(ms["torch_fused"], 3),
        "ratio": round(ratio, 3),
        "bar": BAR,
        "passes": ratio <= BAR,
        "explicit_ours_ms": round(ms["ours_explicit"], 3),
        "explicit_torch_ms": round(ms["torch_explicit"], 3),
        "explicit_ratio": round(ms["ours_explicit"] / ms["torch_explicit"], 3),
        "explicit_over_fused": round(ms["ours_explicit"] / ms["ours_fused"], 3),
    }
    print(json.dumps(result))
    return 0 if result["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
