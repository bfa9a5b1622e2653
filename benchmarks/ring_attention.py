"""Ring attention on 2 processes against attention in one process, causal, at T = 8,192.

One head (B = 1, H = 1, d_k = 64, float32, CPU; ``--threads`` PyTorch threads in the one process
and in each rank). The sequence is cut into
two chunks of 4,096 positions, one per process (gloo on 127.0.0.1, ``distributed.launch``), and
``distributed.ring_attention(causal=True)`` computes each chunk's output. The reference is
``attention.scaled_dot_product_attention`` with a ``(T, T)`` causal mask in one process (the mask
built inside the measured call, as ring attention builds its own).

Reported: each rank's peak tensor memory (``measure.peak_memory``, read from PyTorch's allocator)
against the one process's, the ring's time (the slower rank's median over ``--repeat`` calls)
against the one process's median, and the bytes each rank sent (counted at ``dist.isend``)
against the formula ``(W - 1) * 2 * B * H * (T / W) * d_k * 4``. Bars: peak memory per rank at
most 0.6 of one process's, output within 1e-5. Prints one JSON line last; exits with status 1 if
a bar is missed.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import common
import torch

from attention_book import attention, distributed, measure

T, D_K, WORLD = 8_192, 64, 2
MEMORY_BAR, ERROR_BAR = 0.6, 1e-5


def one_process(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    mask = attention.causal_mask(q.shape[-2])  # (T, T)
    return attention.scaled_dot_product_attention(q, k, v, mask)[0]


def timed_ring(rank: int, world_size: int, q, k, v, repeat: int, threads: int) -> float:
    """Median seconds of this rank's ring_attention call (a barrier lines the ranks up first)."""
    torch.set_num_threads(threads)
    q, k, v = (t.chunk(world_size, dim=-2)[rank].contiguous() for t in (q, k, v))
    seconds = []
    for _ in range(repeat):
        torch.distributed.barrier()
        start = time.perf_counter()
        distributed.ring_attention(q, k, v, causal=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def build_parser():
    """The command line: ``--threads``, ``--load`` (see ``common``) and timed rounds."""
    parser = common.parser(__doc__)
    parser.add_argument(
        "--repeat", type=common.positive_int, default=3, help="timed calls per implementation"
    )
    return parser


def main() -> int:
    args = build_parser().parse_args()
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, T, D_K) for _ in range(3))  # (B, H, T, d_k)
    with common.conditions(args.threads, args.load) as conditions:
        measured = compare(q, k, v, args.repeat, args.threads)
    result = {
        "benchmark": "ring_attention",
        "shape": {"B": 1, "H": 1, "T": T, "d_k": D_K, "dtype": "float32", "causal": True},
        "world_size": WORLD,
        **conditions,
        **measured,
    }
    result["passes"] = (
        result["memory_ratio"] <= MEMORY_BAR
        and result["max_abs_error"] <= ERROR_BAR
        and result["bytes_sent_per_rank"] == [result["bytes_formula"]] * WORLD
    )
    print(json.dumps(result))
    return 0 if result["passes"] else 1


def compare(q, k, v, repeat: int, threads: int) -> dict:
    """Peak memory, time, bytes sent and error of the ring against the one process."""
    held: list[torch.Tensor] = []
    single_peak = measure.peak_memory(lambda: held.append(one_process(q, k, v)))
    reference = held.pop()
    single_s = measure.time_calls({"one": lambda: one_process(q, k, v)}, repeat)["one"]

    runs = distributed.launch(distributed.ring_worker, WORLD, q, k, v, True, True)
    output = torch.cat([out for out, _, _ in runs], dim=-2)  # (B, H, T, d_k)
    error = (output - reference).abs().max().item()
    peaks = [peak for _, _, peak in runs]
    sent = [s for _, s, _ in runs]
    formula = (WORLD - 1) * 2 * 1 * 1 * (T // WORLD) * D_K * 4
    ring_s = max(distributed.launch(timed_ring, WORLD, q, k, v, repeat, threads))
    memory_ratio = max(peaks) / single_peak
    return {
        "repeat": repeat,
        "peak_mib": {
            "one_process": round(single_peak / 2**20, 1),
            "per_rank": [round(p / 2**20, 1) for p in peaks],
        },
        "memory_ratio": round(memory_ratio, 4),
        "ms": {"one_process": round(1000 * single_s, 1), "ring": round(1000 * ring_s, 1)},
        "time_ratio": round(ring_s / single_s, 3),
        "bytes_sent_per_rank": sent,
        "bytes_formula": formula,
        "max_abs_error": float(f"{error:.3g}"),
        "bars": {"memory_ratio": MEMORY_BAR, "max_abs_error": ERROR_BAR},
    }


if __name__ == "__main__":
    sys.exit(main())
