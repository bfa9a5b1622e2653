"""Sentences per second: all-MiniLM-L6-v2 run by the book's modules against transformers' BertModel.

Both models hold the same weights (the book's through ``pretrained.load_minilm``, transformers'
from the same unpacked folder, with its default attention implementation) and encode the same
1,000 sentences, tokenized once by the same tokenizer, in batches of 32 padded to their longest
sentence, then mean-pooled and normalised the same way (CPU, ``--threads`` PyTorch threads,
default the book's one). The embeddings are checked to agree within 1e-5 first. On a shared
machine the load changes from second to second, so the two models take turns batch by batch (who
goes first alternates), every batch is timed ``REPEATS`` times, and each model's time is the sum
over batches of its median time.

Bar: the book's model reaches at least 0.8 of transformers' sentences per second. Prints one
JSON line last (with the thread count and the load average) and exits with status 1 if the bar
is missed.

Usage: python benchmarks/encoder_throughput.py [--threads N] [--load N]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import common  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from attention_book import bert, pretrained  # noqa: E402

N, BATCH, REPEATS = 1000, 32, 3
BAR = 0.8
WORDS = (
    "the cat sat on mat because it was tired animal did not cross street too wide attention "
    "model reads every word at once and weighs them by how well their keys match its query "
    "a pretrained encoder turns sentences into vectors whose cosine similarity tracks meaning"
).split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """n sentences of 4 to 40 words drawn from a fixed word list."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 41, (n,), generator=g).tolist()
    return [
        " ".join(WORDS[i] for i in torch.randint(len(WORDS), (k,), generator=g).tolist()) + "."
        for k in lengths
    ]


def embed_all(
    hidden: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """(N, D): mean-pooled, normalised embeddings of every batch."""
    out = [F.normalize(bert.mean_pool(hidden(ids, real), real), dim=-1) for ids, real in batches]
    return torch.cat(out)


def build_parser():
    """The command line: ``--threads`` and ``--load`` (see ``common``)."""
    return common.parser(__doc__)


def main() -> int:
    args = build_parser().parse_args()
    with common.conditions(args.threads, args.load) as conditions:
        max_diff, seconds = run()
    rate = {name: N / sum(s) for name, s in seconds.items()}
    ratio = rate["book"] / rate["transformers"]
    passes = ratio >= BAR and max_diff <= 1e-5
    result = {
        "benchmark": "encoder_throughput",
        "sentences": N,
        "batch": BATCH,
        **conditions,
        "repeats": REPEATS,
        "book_sentences_per_s": round(rate["book"], 1),
        "transformers_sentences_per_s": round(rate["transformers"], 1),
        "ratio": round(ratio, 3),
        "bar": BAR,
        "max_abs_diff": max_diff,
        "passes": passes,
    }
    print(json.dumps(result))
    return 0 if passes else 1


def run() -> tuple[float, dict[str, list[float]]]:
    """The largest embedding difference, and each model's median seconds per batch."""
    from transformers import BertModel

    model, _ = pretrained.load_minilm()
    reference = BertModel.from_pretrained(str(pretrained.minilm_path())).eval()
    texts = sentences(N)
    batches = [model.tokenize(texts[i : i + BATCH]) for i in range(0, N, BATCH)]
    runs = {
        "book": lambda ids, real: model.encoder(ids, real),
        "transformers": lambda ids, real: reference(ids, attention_mask=real.long())[0],
    }
    with torch.inference_mode():
        ours, theirs = (embed_all(run, batches) for run in runs.values())
        max_diff = (ours - theirs).abs().max().item()
        times = {name: [[] for _ in batches] for name in runs}
        for repeat in range(REPEATS):
            for i, batch in enumerate(batches):
                order = list(runs) if (i + repeat) % 2 == 0 else list(runs)[::-1]
                for name in order:
                    start = time.perf_counter()
                    embed_all(runs[name], [batch])
                    times[name][i].append(time.perf_counter() - start)
    return max_diff, {name: [statistics.median(t) for t in ts] for name, ts in times.items()}


if __name__ == "__main__":
    sys.exit(main())
