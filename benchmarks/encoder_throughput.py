"""Sentences per second: all-MiniLM-L6-v2 run by the book's modules against transformers' BertModel.

Both models hold the same weights (the book's through ``pretrained.load_minilm``, transformers'
from the same unpacked folder, with its default attention implementation) and encode the same
1,000 sentences, tokenized once by the same tokenizer, in batches of 32 padded to their longest
sentence, then mean-pooled and normalised the same way (CPU, 2 threads). The embeddings are
checked to agree within 1e-5 first. On a shared machine the load changes from second to second,
so the two models take turns batch by batch (who goes first alternates), every batch is timed
``REPEATS`` times, and each model's time is the sum over batches of its fastest time.

Bar: the book's model reaches at least 0.8 of transformers' sentences per second. Prints one
JSON line last and exits with status 1 if the bar is missed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from attention_book import bert, pretrained  # noqa: E402

N, BATCH, THREADS, REPEATS = 1000, 32, 2, 3
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


def main() -> int:
    from transformers import BertModel

    torch.set_num_threads(THREADS)
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
        best = {name: [float("inf")] * len(batches) for name in runs}
        for repeat in range(REPEATS):
            for i, batch in enumerate(batches):
                order = list(runs) if (i + repeat) % 2 == 0 else list(runs)[::-1]
                for name in order:
                    start = time.perf_counter()
                    embed_all(runs[name], [batch])
                    best[name][i] = min(best[name][i], time.perf_counter() - start)
    rate = {name: N / sum(seconds) for name, seconds in best.items()}
    ratio = rate["book"] / rate["transformers"]
    passes = ratio >= BAR and max_diff <= 1e-5
    result = {
        "benchmark": "encoder_throughput",
        "sentences": N,
        "batch": BATCH,
        "threads": THREADS,
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


if __name__ == "__main__":
    sys.exit(main())
