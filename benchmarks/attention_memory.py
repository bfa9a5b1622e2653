"""Peak memory and time of causal attention: explicit, blockwise and PyTorch's fused kernel.

One head (B = 1, H = 1, d_k = 64, float32, CPU) at T = 1,024, 4,096 and 8,192, causal:

* explicit: ``attention.scaled_dot_product_attention`` with a ``(T, T)`` causal mask, built
  beforehand and counted as an input (which flatters the explicit version);
* blockwise: ``efficient.blockwise_attention(causal=True)``, tiles of ``--block-size``;
* fused: ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``.

Peak memory is the tensor memory each call allocates above its inputs, read from PyTorch's
allocator by ``measure.peak_memory`` (torch.profiler), not computed from a formula. Times are
medians of interleaved runs (``measure.time_calls``), with ``--threads`` PyTorch threads (default:
the book's one). Bars at T = 8,192: the blockwise peak is at most 1/20 of the explicit one, its
time at most 4 times the explicit one, and its output within 1e-5 of the explicit output. Prints
one JSON line last (with the thread count and the load average); exits with status 1 if a bar is
missed.

Usage: python benchmarks/attention_memory.py [--threads N] [--load N] [--block-size N] [--repeat N]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import common
import torch
import torch.nn.functional as F

from attention_book import attention, efficient, measure

LENGTHS = (1_024, 4_096, 8_192)
D_K = 64
MEMORY_BAR, TIME_BAR, ERROR_BAR = 1 / 20, 4.0, 1e-5


def implementations(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, block_size: int
) -> dict[str, Callable[[], torch.Tensor]]:
    """The three ways of computing the same causal attention, as calls of no arguments."""
    return {
        "explicit": lambda: attention.scaled_dot_product_attention(q, k, v, mask)[0],
        "blockwise": lambda: efficient.blockwise_attention(
            q, k, v, causal=True, block_size=block_size
        ),
        "fused": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }


def measure_all(block_size: int, repeat: int) -> dict[int, dict]:
    """Peak memory, median time and error of the three implementations at each length."""
    results = {}
    for T in LENGTHS:
        q, k, v = (torch.randn(1, 1, T, D_K) for _ in range(3))  # (B, H, T, d_k)
        mask = attention.causal_mask(T)  # (T, T), an input of the explicit version
        calls = implementations(q, k, v, mask, block_size)
        reference = calls["explicit"]()
        error = {
            name: (fn() - reference).abs().max().item()
            for name, fn in calls.items()
            if name != "explicit"
        }
        del reference
        peak = {name: measure.peak_memory(fn) for name, fn in calls.items()}
        seconds = measure.time_calls(calls, repeat=repeat, warmup=1)
        results[T] = {
            name: {
                "peak_mib": round(peak[name] / 2**20, 3),
                "ms": round(1000 * seconds[name], 1),
            }
            for name in calls
        }
        results[T]["max_abs_error"] = {name: float(f"{e:.3g}") for name, e in error.items()}
        print(f"T = {T}: {json.dumps(results[T])}", file=sys.stderr, flush=True)
    return results


def build_parser():
    """The command line: ``--threads``, ``--load`` (see ``common``), tile size and rounds."""
    parser = common.parser(__doc__)
    parser.add_argument(
        "--block-size", type=common.positive_int, default=512, help="blockwise tile size"
    )
    parser.add_argument(
        "--repeat", type=common.positive_int, default=3, help="timed rounds per length"
    )
    return parser


def main() -> int:
    args = build_parser().parse_args()
    torch.manual_seed(0)
    with common.conditions(args.threads, args.load) as conditions:
        results = measure_all(args.block_size, args.repeat)
    last = results[LENGTHS[-1]]
    memory_ratio = last["blockwise"]["peak_mib"] / last["explicit"]["peak_mib"]
    time_ratio = last["blockwise"]["ms"] / last["explicit"]["ms"]
    error = last["max_abs_error"]["blockwise"]
    result = {
        "benchmark": "attention_memory",
        "shape": {"B": 1, "H": 1, "d_k": D_K, "dtype": "float32", "causal": True},
        **conditions,
        "block_size": args.block_size,
        "repeat": args.repeat,
        "results": {str(T): r for T, r in results.items()},
        "memory_ratio": round(memory_ratio, 4),
        "time_ratio": round(time_ratio, 3),
        "max_abs_error": error,
        "bars": {"memory_ratio": MEMORY_BAR, "time_ratio": TIME_BAR, "max_abs_error": ERROR_BAR},
        "passes": memory_ratio <= MEMORY_BAR and time_ratio <= TIME_BAR and error <= ERROR_BAR,
    }
    print(json.dumps(result))
    return 0 if result["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
