"""Train the book's Transformer on the dates task from scratch, on 2 CPU threads.

Measures (1) the exact-match accuracy of greedy decoding (and of beam search) on 2,000 held-out
dates, none of which occurs in training in any format, and the training wall time; (2) the time
of one training step (forward, backward, AdamW step) of the book's Transformer and of
``torch.nn.Transformer`` of the same size on the same batches: median over interleaved steps.

The bar: exact match >= 0.99 within 120 s of training, and a step-time ratio <= 1.2.
Hyperparameters come from ``attention_book.dates.RECIPE`` (shared with chapter 11).
Prints progress to stderr and, last, one JSON line to stdout.

Usage: python benchmarks/train_dates.py [--steps N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

import torch
from torch import Tensor, nn

from attention_book import dates, decoding, positional, reproducibility, train, transformer

THREADS = 2
TEST_EXAMPLES = 2000
TEST_SEED = 12345
TIMING_STEPS = 15
BAR_EXACT_MATCH = 0.99
BAR_SECONDS = 120.0
BAR_RATIO = 1.2


class TorchSeq2Seq(nn.Module):
    """``torch.nn.Transformer`` with the same embeddings, positional encoding and generator."""

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


def step_times(recipe: dates.Recipe, src: Tensor, tgt: Tensor) -> tuple[float, float]:
    """Median milliseconds per training step of the two models, interleaved on equal batches."""
    config = transformer.TransformerConfig(**recipe.model_kwargs())
    models = {"ours": transformer.Transformer(config), "torch": TorchSeq2Seq(config)}
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(TIMING_STEPS + 3):
        rows = torch.randperm(src.shape[0], generator=generator)[: recipe.batch_size]
        batch_src = src[rows]  # (batch_size, S)
        length = int((batch_src != dates.PAD_ID).sum(1).max())  # trim padding, as in training
        batches.append((batch_src[:, :length], tgt[rows]))
    times: dict[str, list[float]] = {k: [] for k in models}
    for i, (s, t) in enumerate(batches):
        for name, model in models.items():
            model.train()
            start = time.perf_counter()
            loss = decoding.seq2seq_loss(model, s, t)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizers[name].step()
            if i >= 3:  # the first steps warm up allocators and kernels
                times[name].append(1000 * (time.perf_counter() - start))
    return statistics.median(times["ours"]), statistics.median(times["torch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=dates.RECIPE.steps)
    args = parser.parse_args()
    recipe = dataclasses.replace(dates.RECIPE, steps=args.steps)
    reproducibility.set_seed(recipe.seed, threads=THREADS)
    load_before = os.getloadavg()[0]

    start = time.perf_counter()
    train_src, train_tgt = dates.encode_examples(
        dates.sample(recipe.train_examples, "train", seed=recipe.seed)
    )
    test_examples = dates.sample(TEST_EXAMPLES, "test", seed=TEST_SEED)
    test_src, _ = dates.encode_examples(test_examples)
    references = [e.target for e in test_examples]
    data_seconds = time.perf_counter() - start

    model = transformer.Transformer(transformer.TransformerConfig(**recipe.model_kwargs()))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    schedule = decoding.warmup_cosine_schedule(optimizer, recipe.warmup_steps, recipe.steps)
    loss_fn = decoding.batch_loss_fn(
        train_src,
        train_tgt,
        recipe.batch_size,
        label_smoothing=recipe.label_smoothing,
        seed=recipe.seed,
    )
    start = time.perf_counter()
    history = train.fit(
        model, loss_fn, recipe.steps, optimizer=optimizer, scheduler=schedule, progress=False
    )
    train_seconds = time.perf_counter() - start
    print(f"trained {recipe.steps} steps in {train_seconds:.1f} s", file=sys.stderr, flush=True)

    start = time.perf_counter()
    to_text = dates.TARGET_VOCAB.decode_batch
    max_len = dates.TARGET_LEN - 1
    greedy = decoding.translate(model, test_src, to_text, max_len)
    greedy_seconds = time.perf_counter() - start
    beam = decoding.translate(model, test_src, to_text, max_len, beam_width=4)
    exact_match = decoding.exact_match(greedy, references)
    errors = [(e.source, p) for e, p in zip(test_examples, greedy, strict=True) if p != e.target]
    print(f"exact match {exact_match:.4f}; errors: {errors[:5]}", file=sys.stderr, flush=True)

    ours_ms, torch_ms = step_times(recipe, train_src, train_tgt)
    result = {
        "benchmark": "train_dates",
        "exact_match": exact_match,
        "exact_match_beam4": decoding.exact_match(beam, references),
        "seconds": round(train_seconds, 2),
        "data_seconds": round(data_seconds, 2),
        "greedy_decode_seconds": round(greedy_seconds, 2),
        "test_examples": TEST_EXAMPLES,
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "final_loss": round(history.final_loss, 5),
        "parameters": transformer.count_parameters(model),
        "step_ms_ours": round(ours_ms, 2),
        "step_ms_torch": round(torch_ms, 2),
        "step_ratio": round(ours_ms / torch_ms, 3),
        "threads": torch.get_num_threads(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "meets_bar": exact_match >= BAR_EXACT_MATCH
        and train_seconds <= BAR_SECONDS
        and ours_ms / torch_ms <= BAR_RATIO,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
