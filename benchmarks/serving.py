"""Serving SmolLM2-135M-Instruct: prefill and decode against the bandwidth limit, the paged
cache's memory, and speculative decoding's speed-up (chapter 16).

Reports, in one run:

* prefill (one pass over a 64-token prompt) and decode (one cached step) tokens per second of
  the book's Llama and of transformers' model of the same GGUF file, alternated
  (``measure.time_calls``), each also as a fraction of the decode limit, the memory bandwidth
  (``measure.memory_bandwidth``) over the bytes of the float32 weights;
* the memory of a mixed batch of 8 sequences in ``serving.PagedKVCache`` (blocks of 16)
  against a contiguous reservation of 2,048 positions each;
* greedy speculative decoding with prompt lookup against plain cached greedy decoding
  (``generation.generate``), both stopping at the end-of-turn token, alternated, on a prompt
  whose answer repeats it and on an open question, with the acceptance rates; and the
  early-exit draft (10 of 30 layers) on the question.

Bar: on the repeating prompt, speculative decoding is at least 1.2x as fast as plain cached
greedy decoding, with identical tokens (the open question and the early exit are reported,
where speculation does not pay). Prints one JSON line last (with the thread count and the load
average) and exits with status 1 if the bar is missed.

Usage: python benchmarks/serving.py [--threads N] [--load N]
"""

from __future__ import annotations

import copy
import json
import sys

import common
import torch

from attention_book import generation, llama, measure, pretrained, serving

BAR = 1.2
NEW_TOKENS = 24
REPEATS = 3
ECHO = (
    "Repeat after me, word for word: the cat sat on the mat and looked out of the window "
    "at the rain."
)
QUESTION = "Why is the sky blue?"
SEQ_LENGTHS = [37, 150, 12, 600, 90, 1800, 300, 45]


def build_parser():
    """The command line: ``--threads`` and ``--load`` (see ``common``)."""
    return common.parser(__doc__)


def main() -> int:
    args = build_parser().parse_args()
    with common.conditions(args.threads, args.load) as conditions:
        result = run()
    result.update(conditions)
    result["passes"] = result["speculative_speedup_repeat"] >= BAR and result["same_tokens"]
    print(json.dumps(result))
    return 0 if result["passes"] else 1


@torch.no_grad()
def phases(model, reference, prompt: torch.Tensor) -> dict:
    """Prefill and decode tokens per second of both implementations."""
    T = prompt.shape[1]
    cache = generation.KVCache(model.config.num_layers)
    model(prompt, cache=cache)
    ref_out = reference(prompt, use_cache=True)
    new = prompt[:, -1:]

    # each step starts from a copy of the prefilled cache (3 MB), the same for both
    def ours_decode():
        model(new, cache=copy.deepcopy(cache))

    def theirs_decode():
        past = copy.deepcopy(ref_out.past_key_values)
        reference(new, past_key_values=past, use_cache=True)

    seconds = measure.time_calls(
        {
            "ours_prefill": lambda: model(prompt),
            "transformers_prefill": lambda: reference(prompt),
            "ours_decode": ours_decode,
            "transformers_decode": theirs_decode,
        },
        repeat=REPEATS,
    )
    return {name: (T if name.endswith("prefill") else 1) / s for name, s in seconds.items()}


def paged_memory(config: llama.LlamaConfig) -> dict:
    """A mixed batch in a paged cache against a contiguous reservation of 2,048 each."""
    pool = serving.BlockPool(config.num_layers, block_size=16)
    held = 0
    for n in SEQ_LENGTHS:
        cache = serving.PagedKVCache(config.num_layers, pool=pool)
        kv = torch.zeros(1, config.num_kv_heads, n, config.d_k)
        for layer in range(config.num_layers):
            cache.update(layer, kv, kv)
        held += cache.memory_bytes()
    return {
        "paged_mixed_batch_lengths": SEQ_LENGTHS,
        "paged_mib": round(held / 2**20, 1),
        "contiguous_2048_mib": round(
            len(SEQ_LENGTHS) * llama.kv_cache_bytes(config, 2048) / 2**20, 1
        ),
        "tokens_need_mib": round(llama.kv_cache_bytes(config, sum(SEQ_LENGTHS)) / 2**20, 1),
    }


def speculation(model, tokenizer) -> dict:
    """Speculative greedy decoding against plain greedy decoding, alternated."""
    out: dict = {"same_tokens": True}
    draft = serving.early_exit(model, 10)
    # both stop at the end of the turn, as a served answer does
    rules = {"temperature": 0, "eos_id": tokenizer.eos_id}
    for name, text in (("repeat", ECHO), ("question", QUESTION)):
        prompt = torch.tensor([tokenizer.chat_ids(text)])
        plain = generation.generate(model, prompt, NEW_TOKENS, **rules)
        fast, stats = serving.speculative_generate(
            model, "prompt_lookup", prompt, NEW_TOKENS, **rules
        )
        out["same_tokens"] &= torch.equal(plain, fast)
        seconds = measure.time_calls(
            {
                "plain": lambda p=prompt: generation.generate(model, p, NEW_TOKENS, **rules),
                "lookup": lambda p=prompt: serving.speculative_generate(
                    model, "prompt_lookup", p, NEW_TOKENS, **rules
                ),
            },
            repeat=REPEATS,
            warmup=0,
        )
        out[f"speculative_speedup_{name}"] = round(seconds["plain"] / seconds["lookup"], 3)
        out[f"acceptance_{name}"] = round(serving.acceptance_rate(stats), 3)
        out[f"target_passes_{name}"] = stats["rounds"]
        if name == "question":
            exit_out, exit_stats = serving.speculative_generate(
                model, draft, prompt, NEW_TOKENS, num_draft=2, **rules
            )
            out["same_tokens"] &= torch.equal(plain, exit_out)
            exit_s = measure.time_calls(
                {
                    "exit": lambda p=prompt: serving.speculative_generate(
                        model, draft, p, NEW_TOKENS, num_draft=2, **rules
                    )
                },
                repeat=1,
                warmup=0,
            )["exit"]
            out["early_exit_speedup_question"] = round(seconds["plain"] / exit_s, 3)
            out["early_exit_acceptance_question"] = round(serving.acceptance_rate(exit_stats), 3)
    return out


def run() -> dict:
    """Load both models and measure the three parts."""
    import transformers  # a test-only reference

    model, tokenizer = pretrained.load_smollm2()
    path = pretrained.smollm2_gguf_path()
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (1, 64), generator=g)
    bandwidth = measure.memory_bandwidth()
    weight_bytes = 4 * sum(p.numel() for p in model.parameters())
    limit = bandwidth * 1e9 / weight_bytes  # decode tokens per second the bandwidth allows
    rates = phases(model, reference, prompt)
    result = {
        "benchmark": "serving",
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32)",
        "bandwidth_gb_s": round(bandwidth, 2),
        "decode_limit_tokens_per_s": round(limit, 2),
    }
    for name, rate in rates.items():
        result[f"{name}_tokens_per_s"] = round(rate, 2)
        result[f"{name}_fraction_of_limit"] = round(rate / limit, 3)
    result.update(paged_memory(model.config))
    result.update(speculation(model, tokenizer))
    result["bar"] = BAR
    return result


if __name__ == "__main__":
    sys.exit(main())
