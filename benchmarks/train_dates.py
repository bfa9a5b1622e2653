"""Train the book's Transformer and chapter 12's GPT on the dates task, on the CPU.

Measures (1) the exact-match accuracy of greedy decoding (and of beam search) on 2,000 distinct
held-out dates, none of which occurs in training in any format, and the training wall time;
exact match compares ids up to and including ``<eos>``, so an output that never ends is wrong;
(2) the time of one training step (forward, backward, AdamW step) of the book's Transformer and
of ``torch.nn.Transformer`` with the same post-LN layout and the same number of parameters, on
the same batches: median (and interquartile range) over interleaved steps whose order
alternates, so that neither model always runs first.

(3) the same for the decoder-only GPT of chapter 12 (``gpt.dates_config(recipe)``, 1% fewer
parameters than the encoder-decoder), trained with the same recipe, steps and batches of 128,
on the same pairs written as one sequence ``source <bos> target <eos>`` with the loss on the
target, and decoded greedily (with the KV cache) on the same 2,000 held-out dates; its
training step is timed in the same interleaved loop.

Both models are trained by ``checkpoints.train_dates_model``, the function that made chapter
12's saved runs, for ``--steps`` steps (default ``dates.RECIPE.steps``, 500), and scored by
``checkpoints.exact_match`` on ``checkpoints.held_out_examples(2000)``.

The bar: exact match >= 0.99 within 120 s of training for each of the two models, and a
step-time ratio (ours against ``torch.nn.Transformer``) <= 1.2. PyTorch runs ``--threads``
threads (default: the book's one). Prints progress to stderr and, last, one JSON line to
stdout (with the thread count and the load average); exits with status 1 if the bar is missed.

Usage: python benchmarks/train_dates.py [--threads N] [--load N] [--steps N]
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time

import common
import torch
from torch import Tensor, nn

from attention_book import (
    checkpoints,
    dates,
    decoding,
    gpt,
    positional,
    reproducibility,
    train,
    transformer,
)

TEST_EXAMPLES = 2000
TIMING_STEPS = 60
TIMING_WARMUP = 5
BAR_EXACT_MATCH = 0.99
BAR_SECONDS = 120.0
BAR_RATIO = 1.2


class TorchSeq2Seq(nn.Module):
    """``torch.nn.Transformer`` with the same embeddings, positional encoding and generator.

    ``nn.Transformer`` always adds a final LayerNorm after its encoder and decoder stacks (what
    a pre-LN model needs); in a post-LN model each layer already ends with one, and ours has
    no extra norm, so they are removed here: both models then have the same layers and the
    same parameter count.
    """

    def __init__(self, config: transformer.TransformerConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.register_buffer("pe", positional.sinusoidal_encoding(c.max_len, c.d_model))
        self.core = nn.Transformer(
            d_model=c.d_model,
            nhead=c.num_heads,
            num_encoder_layers=c.num_encoder_layers,
            num_decoder_layers=c.num_decoder_layers,
            dim_feedforward=c.d_ff,
            dropout=c.dropout,
            batch_first=True,
        )
        self.core.encoder.norm = None  # post-LN: the last layer's own norm is the output's
        self.core.decoder.norm = None
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size)
        self.scale = c.d_model**0.5

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """``(B, S)``, ``(B, T)`` ids -> ``(B, T, V)`` logits; PyTorch masks: True = blocked."""
        T = tgt.shape[1]
        x = self.src_embed(src) * self.scale + self.pe[: src.shape[1]]  # (B, S, D)
        y = self.tgt_embed(tgt) * self.scale + self.pe[:T]  # (B, T, D)
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # (T, T), True above the diagonal
        pad = src == self.config.pad_id  # (B, S)
        out = self.core(
            x,
            y,
            tgt_mask=causal,
            src_key_padding_mask=pad,
            memory_key_padding_mask=pad,
            tgt_is_causal=True,
        )  # (B, T, D)
        return self.generator(out)  # (B, T, V)


def step_times(
    recipe: dates.Recipe, src: Tensor, tgt: Tensor, lm_inputs: Tensor, lm_labels: Tensor
) -> dict[str, list[float]]:
    """Milliseconds per training step of the three models, interleaved on equal batches.

    Step i times the two encoder-decoders on the same batch, ours first when i is even and
    torch's first when i is odd, so that cache and frequency effects of going first or second
    fall equally on both; the GPT then trains on the same pairs written as one sequence. The
    first ``TIMING_WARMUP`` steps warm up allocators and kernels and are not kept.
    """
    config = transformer.dates_config(recipe)
    models = {"ours": transformer.Transformer(config), "torch": TorchSeq2Seq(config)}
    n_ours, n_torch = (transformer.count_parameters(m) for m in models.values())
    assert n_ours == n_torch, f"parameter counts differ: ours {n_ours}, torch {n_torch}"
    # A small fixed learning rate, not the recipe's schedule: these steps only measure time, and
    # a gentle rate keeps the two untrained models' weights (hence the work) from diverging.
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    lm = gpt.GPT(gpt.dates_config(recipe))
    lm_optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(TIMING_WARMUP + TIMING_STEPS):
        rows = torch.randperm(src.shape[0], generator=generator)[: recipe.batch_size]
        batch_src = src[rows]  # (batch_size, S)
        length = int((batch_src != dates.PAD_ID).sum(1).max())  # trim padding, as in training
        lm_length = int((lm_inputs[rows] != dates.PAD_ID).sum(1).max())
        lm_batch = (lm_inputs[rows, :lm_length], lm_labels[rows, :lm_length])
        batches.append((batch_src[:, :length], tgt[rows], lm_batch))
    times: dict[str, list[float]] = {k: [] for k in (*models, "gpt")}
    for i, (s, t, (lm_in, lm_lab)) in enumerate(batches):
        order = ("ours", "torch") if i % 2 == 0 else ("torch", "ours")
        for name in order:
            model = models[name].train()
            start = time.perf_counter()
            loss = train.seq2seq_loss(model, s, t)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizers[name].step()
            if i >= TIMING_WARMUP:
                times[name].append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        loss = gpt.lm_loss(lm.train(), lm_in, lm_lab)
        lm_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        lm_optimizer.step()
        if i >= TIMING_WARMUP:
            times["gpt"].append(1000 * (time.perf_counter() - start))
    return times


def train_and_score(kind: str, steps: int, test_examples: list) -> dict:
    """Train ``kind`` with ``checkpoints.train_dates_model`` (the recipe, ``steps`` steps) and
    measure its greedy exact match on ``test_examples``; keys are prefixed ``gpt_`` for the GPT."""
    start = time.perf_counter()
    model, history = checkpoints.train_dates_model(kind, steps, progress=False)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    exact = checkpoints.exact_match(model, kind, test_examples)
    decode_seconds = time.perf_counter() - start
    name = "GPT" if kind == "gpt" else "encoder-decoder"
    print(
        f"{name}: {steps} steps in {train_seconds:.1f} s; exact match {exact:.4f}",
        file=sys.stderr,
        flush=True,
    )
    result = {
        "exact_match": exact,
        "seconds": round(train_seconds, 2),
        "greedy_decode_seconds": round(decode_seconds, 2),
        "final_loss": round(history.final_loss, 5),
        "parameters": transformer.count_parameters(model),
    }
    if kind == "encdec":  # beam search, for comparison with greedy
        src, tgt = dates.encode_examples(test_examples)  # (N, S), (N, 12)
        _, labels = train.teacher_forcing(tgt)  # (N, 11): the target and <eos>
        beam, _ = decoding.beam_search(model, src, dates.TARGET_LEN - 1, beam_width=4)
        result["exact_match_beam4"] = decoding.exact_match_ids(beam, labels)
        return result
    return {f"gpt_{k}": v for k, v in result.items()}


def median_and_iqr(values: list[float]) -> tuple[float, float]:
    """The median and the interquartile range (75th minus 25th percentile) of ``values``."""
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q2, q3 - q1


def measure(recipe: dates.Recipe) -> dict:
    """Train and evaluate both models with ``recipe``, then time their training steps."""
    start = time.perf_counter()
    train_examples = dates.sample(recipe.train_examples, "train", seed=recipe.seed)
    test_examples = checkpoints.held_out_examples(TEST_EXAMPLES)
    train_src, train_tgt = dates.encode_examples(train_examples)
    data_seconds = time.perf_counter() - start
    encdec = train_and_score("encdec", recipe.steps, test_examples)
    gpt_result = train_and_score("gpt", recipe.steps, test_examples)
    times = step_times(recipe, train_src, train_tgt, *dates.encode_lm_examples(train_examples))
    gpt_ms, gpt_iqr = median_and_iqr(times["gpt"])
    ours_ms, ours_iqr = median_and_iqr(times["ours"])
    torch_ms, torch_iqr = median_and_iqr(times["torch"])
    return {
        "benchmark": "train_dates",
        **encdec,
        "data_seconds": round(data_seconds, 2),
        "test_examples": TEST_EXAMPLES,
        "test_distinct_dates": len({e.date for e in test_examples}),
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "parameters_torch": transformer.count_parameters(
            TorchSeq2Seq(transformer.dates_config(recipe))
        ),
        "timing_steps": TIMING_STEPS,
        "step_ms_ours": round(ours_ms, 2),
        "step_ms_ours_iqr": round(ours_iqr, 2),
        "step_ms_torch": round(torch_ms, 2),
        "step_ms_torch_iqr": round(torch_iqr, 2),
        "step_ratio": round(ours_ms / torch_ms, 3),
        **gpt_result,
        "gpt_step_ms": round(gpt_ms, 2),
        "gpt_step_ms_iqr": round(gpt_iqr, 2),
        "gpt_step_ratio_to_ours": round(gpt_ms / ours_ms, 3),
    }


def build_parser():
    """The command line: ``--threads``, ``--load`` (see ``common``) and the training steps."""
    parser = common.parser(__doc__)
    parser.add_argument("--steps", type=common.positive_int, default=dates.RECIPE.steps)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    recipe = dataclasses.replace(dates.RECIPE, steps=args.steps)
    with common.conditions(args.threads, args.load) as conditions:
        reproducibility.set_seed(recipe.seed, threads=args.threads)
        result = measure(recipe)
    result.update(conditions)
    result["meets_bar_encdec"] = (
        result["exact_match"] >= BAR_EXACT_MATCH
        and result["seconds"] <= BAR_SECONDS
        and result["step_ratio"] <= BAR_RATIO
    )
    result["meets_bar_gpt"] = (
        result["gpt_exact_match"] >= BAR_EXACT_MATCH and result["gpt_seconds"] <= BAR_SECONDS
    )
    result["meets_bar"] = result["meets_bar_encdec"] and result["meets_bar_gpt"]
    print(json.dumps(result))
    raise SystemExit(0 if result["meets_bar"] else 1)


if __name__ == "__main__":
    main()
