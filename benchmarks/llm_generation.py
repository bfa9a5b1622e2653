"""Tokens per second of SmolLM2-135M-Instruct: the book's Llama against transformers' generate.

Both models are loaded from the same GGUF file (the book's with ``pretrained.load_smollm2``,
transformers' with ``from_pretrained(..., gguf_file=...)``) and hold float32 weights. Each
generates the same 30 greedy tokens after a chat prompt of 42 tokens, on the CPU with
``--threads`` PyTorch threads (default: the book's one): the book's model through
``generation.generate`` with and without the key-value cache, and transformers' ``generate`` with
its cache. Cached runs alternate (ours, transformers, ours, ...; ``measure.time_calls``) so that
both see the same background load; medians are compared.

Bar: with its cache, the book's model reaches at least 0.9 of transformers' tokens per second
(and, as a check that the two run the same model, the greedy tokens are equal and the logits on
the prompt agree within 1e-3).
Prints one JSON line last (with the thread count and the load average) and exits with status 1
if the bar is missed.

Usage: python benchmarks/llm_generation.py [--threads N] [--load N]
"""

from __future__ import annotations

import json
import resource
import sys
import time

import common
import torch

from attention_book import generation, measure, pretrained

NEW_TOKENS = 30
REPEATS = 5
BAR = 0.9
QUESTION = "Write a short story about a robot who learns to paint."


def build_parser():
    """The command line: ``--threads`` and ``--load`` (see ``common``)."""
    return common.parser(__doc__)


def main() -> int:
    args = build_parser().parse_args()
    with common.conditions(args.threads, args.load) as conditions:
        result = run()
    result.update(conditions)
    result["passes"] = result["ratio"] >= BAR and result["same_greedy_tokens"]
    result["passes"] &= result["max_abs_logit_diff"] <= 1e-3
    print(json.dumps(result))
    return 0 if result["passes"] else 1


def run() -> dict:
    """Load both models, check that they agree, and time their generation."""
    import transformers  # a test-only reference

    start = time.perf_counter()
    model, tokenizer = pretrained.load_smollm2()
    load_ours = time.perf_counter() - start
    path = pretrained.smollm2_gguf_path()
    start = time.perf_counter()
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    load_reference = time.perf_counter() - start
    prompt = torch.tensor([tokenizer.chat_ids(QUESTION)])  # (1, 42)
    T = prompt.shape[1]

    def ours(use_cache: bool) -> torch.Tensor:
        return generation.generate(model, prompt, NEW_TOKENS, temperature=0, use_cache=use_cache)

    def theirs() -> torch.Tensor:
        with torch.no_grad():
            return reference.generate(
                prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
            )

    same = ours(True)[0, T:].tolist() == theirs()[0, T:].tolist()  # also a warm-up
    with torch.no_grad():
        logit_diff = (model(prompt) - reference(prompt).logits).abs().max().item()
    seconds = measure.time_calls(
        {"ours_cache": lambda: ours(True), "transformers_cache": theirs}, REPEATS, warmup=0
    )
    start = time.perf_counter()
    ours(False)
    no_cache = time.perf_counter() - start
    tps = {name: NEW_TOKENS / s for name, s in seconds.items()}
    ratio = tps["ours_cache"] / tps["transformers_cache"]
    return {
        "benchmark": "llm_generation",
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32)",
        "prompt_tokens": T,
        "new_tokens": NEW_TOKENS,
        "repeats": REPEATS,
        "ours_cache_tokens_per_s": round(tps["ours_cache"], 2),
        "ours_no_cache_tokens_per_s": round(NEW_TOKENS / no_cache, 2),
        "transformers_cache_tokens_per_s": round(tps["transformers_cache"], 2),
        "ratio": round(ratio, 3),
        "bar": BAR,
        "same_greedy_tokens": same,
        "max_abs_logit_diff": float(f"{logit_diff:.2e}"),
        "load_smollm2_s": round(load_ours, 2),
        "transformers_load_s": round(load_reference, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


if __name__ == "__main__":
    sys.exit(main())
