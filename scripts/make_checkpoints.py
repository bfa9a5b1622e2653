"""Train the saved dates models (``checkpoints.SAVED_RUNS``) and save them as package data.

Each gets chapter 11's recipe at its seed, 0 (``checkpoints.train_dates_model``, the function the
chapters call for their live steps): chapter 12's GPT (loss on the target only) and
encoder-decoder for 300 steps, chapter 11's encoder-decoder for 400. Writes
``src/attention_book/checkpoints/dates_{kind}_{steps}.safetensors`` and a JSON file beside each
(every step's loss, exact match on 1,000 held-out dates, the torch version). About 5 minutes
at the book's one thread.

Usage: python scripts/make_checkpoints.py [--kinds gpt encdec]
"""

from __future__ import annotations

import argparse
import sys

from attention_book import checkpoints, dates, reproducibility

SEED = dates.RECIPE.seed  # the recipe's seed, 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=checkpoints.KINDS, default=checkpoints.KINDS)
    args = parser.parse_args(argv)
    reproducibility.set_seed(SEED)  # also the book's one thread
    for kind, steps in checkpoints.SAVED_RUNS:
        if kind not in args.kinds:
            continue
        model, history = checkpoints.train_dates_model(kind, steps, seed=SEED)
        meta = checkpoints.save_dates_checkpoint(model, kind, history, seed=SEED)
        weights, _ = checkpoints.checkpoint_paths(kind, steps)
        print(
            f"{kind}: final loss {history.final_loss:.4f}, exact match "
            f"{meta['exact_match']:.2%}, wrote {weights}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
