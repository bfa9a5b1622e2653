"""Generation speed of chapter 12's GPT with and without the key-value cache, on the CPU.

The model has the chapter's shape (``gpt.dates_config()``: d_model 64, 4 heads, 5 blocks,
d_ff 128) with ``max_len`` raised to hold 1,024 generated tokens; its weights are the untrained
initialisation, since the work per token does not depend on them. From a one-token prompt it
generates 64, 256 and 1,024 tokens greedily (no ``<eos>``, so every run has its full length),
with ``generation.generate(use_cache=True)`` and ``use_cache=False``, in alternating order
(with, without, without, with, ...), and checks that both produce the same tokens. Tokens per
second come from the median of ``REPEATS`` runs (one run at 1,024 tokens, where a run without the
cache takes seconds). PyTorch runs ``--threads`` threads (default: the book's one).

The bar: with the cache, generating 1,024 tokens is at least 5 times faster than without.
Prints one JSON line to stdout (with the thread count and the load average) and exits with
status 1 if the bar is missed.

Usage: python benchmarks/kv_cache.py [--threads N] [--load N]
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time

import common
import torch

from attention_book import dates, generation, gpt, reproducibility, transformer

LENGTHS = (64, 256, 1024)
REPEATS = 3
BAR_SPEEDUP_1024 = 5.0


def seconds(model: gpt.GPT, prompt: torch.Tensor, n: int, use_cache: bool) -> tuple[float, list]:
    """Wall time of one greedy generation of ``n`` tokens, and the tokens."""
    start = time.perf_counter()
    ids = generation.generate(model, prompt, n, temperature=0, use_cache=use_cache)
    return time.perf_counter() - start, ids[0].tolist()


def build_parser():
    """The command line: ``--threads`` and ``--load`` (see ``common``)."""
    return common.parser(__doc__)


def measure() -> dict:
    """Time generation with and without the cache at each length; check the tokens agree."""
    config = gpt.dates_config()
    config = dataclasses.replace(config, max_len=max(LENGTHS) + 1)
    model = gpt.GPT(config).eval()
    prompt = torch.tensor([[dates.SOURCE_VOCAB.index["2"]]])  # (1, 1)
    seconds(model, prompt, 16, True)  # warm-up
    seconds(model, prompt, 16, False)
    result: dict[str, object] = {"benchmark": "kv_cache"}
    identical = True
    for n in LENGTHS:
        times: dict[bool, list[float]] = {True: [], False: []}
        repeats = REPEATS if n < max(LENGTHS) else 1
        for r in range(repeats):
            order = (True, False) if r % 2 == 0 else (False, True)
            tokens = {}
            for use_cache in order:
                s, tokens[use_cache] = seconds(model, prompt, n, use_cache)
                times[use_cache].append(s)
            identical &= tokens[True] == tokens[False]
        cached, uncached = (statistics.median(times[c]) for c in (True, False))
        result[f"tokens_per_s_cache_{n}"] = round(n / cached, 1)
        result[f"tokens_per_s_no_cache_{n}"] = round(n / uncached, 1)
        result[f"speedup_{n}"] = round(uncached / cached, 2)
    cache = generation.KVCache(config.num_layers)
    model(torch.zeros(1, 100, dtype=torch.long), cache=cache)
    per_token = cache.memory_bytes() // 100
    assert per_token == 2 * config.num_layers * config.d_model * 4  # 2 L D float32 numbers
    result.update(
        tokens_identical=identical,
        kv_cache_bytes_per_token=per_token,
        parameters=transformer.count_parameters(model),
    )
    return result


def main() -> None:
    args = build_parser().parse_args()
    with common.conditions(args.threads, args.load) as conditions:
        reproducibility.set_seed(0, threads=args.threads)
        result = measure()
    result.update(conditions)
    result["meets_bar"] = (
        result["tokens_identical"] and result[f"speedup_{max(LENGTHS)}"] >= BAR_SPEEDUP_1024
    )
    print(json.dumps(result))
    raise SystemExit(0 if result["meets_bar"] else 1)


if __name__ == "__main__":
    main()
