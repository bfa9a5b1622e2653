"""Forward plus backward of MultiHeadAttention (fused path) against torch.nn.MultiheadAttention.

Self-attention at B=32, T=128, D=256, H=8 on the CPU with 2 threads. The two modules hold the
same weights (``MultiHeadAttention.from_torch``). Repeats are interleaved (ours, torch, ours, ...)
so that both see the same background load, and the medians are compared.
The bar: ours takes at most 1.15 times torch's time. Prints one JSON line last.
"""

from __future__ import annotations

import json
import statistics
import time

import torch
from torch import nn

from attention_book import multihead

B, T, D, H = 32, 128, 256, 8
THREADS = 2
WARMUP, REPEATS = 5, 40
BAR = 1.15


def _step_time(forward) -> float:
    """Seconds for one forward and backward pass."""
    start = time.perf_counter()
    out = forward()
    out.sum().backward()
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    ref = nn.MultiheadAttention(D, H, batch_first=True)
    ours = multihead.MultiHeadAttention.from_torch(ref)
    x = torch.randn(B, T, D, requires_grad=True)

    def run_ours() -> torch.Tensor:
        return ours(x, x, x, need_weights=False)[0]

    def run_torch() -> torch.Tensor:
        return ref(x, x, x, need_weights=False)[0]

    torch.testing.assert_close(run_ours(), run_torch())  # the same function is being timed
    for _ in range(WARMUP):
        _step_time(run_ours)
        _step_time(run_torch)
    times: dict[str, list[float]] = {"ours": [], "torch": []}
    for _ in range(REPEATS):
        times["ours"].append(_step_time(run_ours))
        times["torch"].append(_step_time(run_torch))
        for p in (*ours.parameters(), *ref.parameters(), x):
            p.grad = None
    ours_ms = 1000 * statistics.median(times["ours"])
    torch_ms = 1000 * statistics.median(times["torch"])
    ratio = ours_ms / torch_ms
    result = {
        "benchmark": "multihead_vs_torch",
        "shape": {"B": B, "T": T, "D": D, "H": H},
        "threads": THREADS,
        "repeats": REPEATS,
        "ours_ms": round(ours_ms, 3),
        "torch_ms": round(torch_ms, 3),
        "ratio": round(ratio, 3),
        "bar": BAR,
        "passes": ratio <= BAR,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
