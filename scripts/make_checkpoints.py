"""Train chapter 12's two dates models and save them as package data.

Both get chapter 11's recipe for 300 steps at seed 0 (``checkpoints.train_dates_model``, the
function chapter 12 calls for its live steps): the GPT with the loss on the target only, and
the encoder-decoder. Writes ``src/attention_book/checkpoints/dates_{gpt,encdec}.safetensors``
and a JSON file beside each (every step's loss, exact match on 1,000 held-out dates, the torch
version). About 3-4 minutes at the book's one thread.

Usage: python scripts/make_checkpoints.py [--kinds gpt encdec]
"""

from __future__ import annotations

import argparse
import sys

from attention_book import checkpoints, reproducibility

STEPS, SEED = 300, 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=checkpoints.KINDS, default=checkpoints.KINDS)
    args = parser.parse_args(argv)
    reproducibility.set_seed(SEED)  # also the book's one thread
    for kind in args.kinds:
        model, history = checkpoints.train_dates_model(kind, STEPS, seed=SEED)
        meta = checkpoints.save_dates_checkpoint(model, kind, history, seed=SEED)
        weights, _ = checkpoints.checkpoint_paths(kind)
        print(
            f"{kind}: final loss {history.final_loss:.4f}, exact match "
            f"{meta['exact_match']:.2%}, wrote {weights}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
