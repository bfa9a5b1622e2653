"""Trained dates models: the training that makes them, and the weights it saved.

Chapter 11 trains its encoder-decoder for 400 steps of its recipe, and chapter 12 compares a
GPT with an encoder-decoder after 300 steps each: minutes of training at one thread. Each
chapter trains the first steps live and loads the full run with :func:`load_dates_checkpoint`:
weights that ``scripts/make_checkpoints.py`` wrote by calling the same function, together
with every step's training loss, so the chapter can check that its live steps are the saved
run's first steps. ``tests/test_checkpoints.py`` retrains both and checks the shipped files.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attention_book import dates, decoding, generation, gpt, train, transformer, validation

KINDS = ("gpt", "encdec")
#: The saved runs, as (kind, steps): chapter 12's two 300-step models and chapter 11's
#: encoder-decoder over its whole schedule (``dates.RECIPE.notebook_steps``, 400).
SAVED_RUNS = (("gpt", 300), ("encdec", 300), ("encdec", dates.RECIPE.notebook_steps))
#: Where the weights and their metadata live (package data).
CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
#: The held-out dates that exact match is measured on: the first 1,000 of chapter 11's 2,000.
TEST_SEED, TEST_EXAMPLES = 12345, 1000
#: Recipe fields that :func:`train_dates_model` does not read (it takes its own ``steps``):
#: changing them leaves a saved checkpoint valid.
UNUSED_RECIPE_FIELDS = ("steps", "notebook_steps")


def _check_kind(kind: object) -> str:
    return validation.check_choice("kind", kind, KINDS)


def new_model(kind: str) -> nn.Module:
    """An untrained model of ``kind``: ``"gpt"`` (chapter 12) or ``"encdec"`` (chapter 11)."""
    if _check_kind(kind) == "gpt":
        return gpt.GPT(gpt.dates_config(dates.RECIPE))
    return transformer.Transformer(transformer.dates_config(dates.RECIPE))


@functools.lru_cache(maxsize=1)
def _train_examples() -> tuple[dates.DateExample, ...]:
    return tuple(dates.sample(dates.RECIPE.train_examples, "train", seed=dates.RECIPE.seed))


def train_dates_model(
    kind: str,
    steps: int = 300,
    *,
    seed: int = 0,
    loss_on_source: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    on_step: Callable[[nn.Module, int], None] | None = None,
) -> tuple[nn.Module, train.History]:
    """Train a dates model with chapter 11's recipe (``dates.RECIPE``); return it and its history.

    AdamW at ``RECIPE.lr`` with weight decay, warm-up then cosine decay over ``steps`` steps,
    batches of ``RECIPE.batch_size`` drawn by :func:`train.batch_loss_fn` from the recipe's
    50,000 training pairs. ``seed`` fixes the initial weights and the order of the batches,
    so two calls with the same arguments train the same model; the caller's random state is
    left as it was.

    Args:
        kind: ``"gpt"`` (one sequence ``source <bos> target <eos>``) or ``"encdec"``.
        steps: the length of the learning-rate schedule.
        seed: the seed of the initial weights and of the batch order.
        loss_on_source: GPT only: also score the source characters, not just the target.
        progress: show a progress bar.
        stop_after: stop after this many steps of the ``steps``-step schedule (default: all),
            so a short run repeats the first steps of the full one.
        on_step: called as ``on_step(model, step)`` before each step (to record a held-out loss).

    Returns:
        The model (in eval mode) and its :class:`train.History`, one loss per step.
    """
    kind = _check_kind(kind)
    steps = validation.check_positive_int("steps", steps)
    seed = validation.check_non_negative_int("seed", seed)
    validation.check_bool("loss_on_source", loss_on_source)
    validation.check_bool("progress", progress)
    run = steps if stop_after is None else validation.check_positive_int("stop_after", stop_after)
    if run > steps:
        raise ValueError(f"stop_after={stop_after} exceeds the schedule's steps={steps}")
    if loss_on_source and kind != "gpt":
        raise ValueError(
            "loss_on_source applies to kind='gpt' only: an encoder-decoder has no "
            "source predictions to score"
        )
    if on_step is not None and not callable(on_step):
        raise TypeError(f"on_step must be callable, got {type(on_step).__name__}")
    recipe = dates.RECIPE
    examples = _train_examples()
    if kind == "gpt":
        inputs, labels = dates.encode_lm_examples(examples, loss_on_source)  # (N, L) each
        loss_fn = train.batch_loss_fn(inputs, labels, recipe.batch_size, task="lm", seed=seed)
    else:
        src, tgt = dates.encode_examples(examples)  # (N, S), (N, 12)
        loss_fn = train.batch_loss_fn(
            src, tgt, recipe.batch_size, label_smoothing=recipe.label_smoothing, seed=seed
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = new_model(kind)
    if on_step is not None:
        inner = loss_fn

        def loss_fn(net: nn.Module, step: int) -> torch.Tensor:
            on_step(net, step)
            return inner(net, step)

    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = train.warmup_cosine_schedule(opt, recipe.warmup_steps, steps)
    desc = "GPT" if kind == "gpt" else "encoder-decoder"
    history = train.fit(
        model, loss_fn, run, optimizer=opt, scheduler=sched, progress=progress, desc=desc
    )
    return model, history


def held_out_examples(n: int = TEST_EXAMPLES) -> list[dates.DateExample]:
    """The first ``n`` (at most 2,000) of chapter 11's held-out dates, all distinct."""
    n = validation.check_positive_int("n", n)
    if n > 2000:
        raise ValueError(f"n must be at most 2,000, got {n}")
    return dates.sample(2000, "test", seed=TEST_SEED, distinct_dates=True)[:n]


def exact_match(model: nn.Module, kind: str, examples: list[dates.DateExample]) -> float:
    """Greedy exact match (the ten characters, then ``<eos>``) of a dates model on ``examples``."""
    kind = _check_kind(kind)
    if len(examples) == 0:
        raise ValueError("examples must not be empty")
    with train.eval_mode(model), torch.no_grad():
        if kind == "gpt":
            prompts = [dates.lm_sequence(e)[: len(e.source) + 1] for e in examples]
            wanted = [dates.SOURCE_VOCAB.encode(e.target) for e in examples]
            outputs = generation.generate_many(
                model, prompts, len(wanted[0]), temperature=0, eos_id=dates.EOS_ID
            )
            return sum(o == w for o, w in zip(outputs, wanted, strict=True)) / len(examples)
        src, tgt = dates.encode_examples(examples)  # (n, S), (n, 12)
        _, labels = train.teacher_forcing(tgt)  # (n, 11)
        predicted = decoding.greedy_decode(model, src, dates.TARGET_LEN - 1)  # (n, 11)
        return decoding.exact_match_ids(predicted, labels, dates.EOS_ID)


def checkpoint_paths(kind: str, steps: int = 300) -> tuple[Path, Path]:
    """The weights (``.safetensors``) and metadata (``.json``) files of a ``steps``-step run."""
    steps = validation.check_positive_int("steps", steps)
    stem = CHECKPOINT_DIR / f"dates_{_check_kind(kind)}_{steps}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_dates_checkpoint(
    model: nn.Module, kind: str, history: train.History, *, seed: int, directory: Path | None = None
) -> dict[str, Any]:
    """Write ``model``'s weights and metadata (steps, seed, recipe, every step's loss, exact
    match on the held-out dates, torch version); return the metadata."""
    from safetensors.torch import save_model

    kind = _check_kind(kind)
    if not history.losses:
        raise ValueError("the history holds no step: train the model first")
    weights, meta_path = checkpoint_paths(kind, len(history.losses))
    if directory is not None:
        weights, meta_path = (Path(directory) / p.name for p in (weights, meta_path))
    metadata = {
        "kind": kind,
        "steps": len(history.losses),
        "seed": seed,
        "recipe": _training_fields(dataclasses.asdict(dates.RECIPE)),  # what shaped the run
        "losses": [round(x, 6) for x in history.losses],
        "exact_match": exact_match(model, kind, held_out_examples()),
        "exact_match_on": f"the first {TEST_EXAMPLES} of dates.sample(2000, 'test', "
        f"seed={TEST_SEED}, distinct_dates=True)",
        "torch_version": torch.__version__,
    }
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(weights))
    meta_path.write_text(json.dumps(metadata, indent=1) + "\n")
    return metadata


def _training_fields(recipe: object) -> dict[str, Any] | None:
    """The recipe's fields that shape a trained model (all but :data:`UNUSED_RECIPE_FIELDS`)."""
    if not isinstance(recipe, dict):
        return None
    return {k: v for k, v in recipe.items() if k not in UNUSED_RECIPE_FIELDS}


def load_dates_checkpoint(kind: str, steps: int = 300) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``scripts/make_checkpoints.py`` trained, in eval mode, and its metadata.

    Args:
        kind: ``"gpt"`` (loss on the target only) or ``"encdec"``.
        steps: the length of the run; :data:`SAVED_RUNS` lists those saved.

    Returns:
        ``(model, metadata)``; metadata holds ``steps``, ``seed``, ``recipe``, ``losses``
        (every training step's loss), ``exact_match`` and ``torch_version``.
    """
    from safetensors.torch import load_model

    kind = _check_kind(kind)
    weights, meta_path = checkpoint_paths(kind, steps)
    if not weights.exists() or not meta_path.exists():
        raise FileNotFoundError(
            f"no checkpoint for kind={kind!r}, steps={steps} at {weights.name} (saved runs: "
            f"{SAVED_RUNS}): run scripts/make_checkpoints.py"
        )
    metadata = json.loads(meta_path.read_text())
    if _training_fields(metadata.get("recipe")) != _training_fields(
        dataclasses.asdict(dates.RECIPE)
    ):
        raise ValueError(
            f"{meta_path.name} was trained with another recipe than dates.RECIPE: "
            "run scripts/make_checkpoints.py again"
        )
    model = new_model(kind)
    load_model(model, str(weights))  # strict: every tensor must match in name and shape
    return model.eval(), metadata


def live_loss_gap(live: train.History, metadata: dict[str, Any]) -> float:
    """The largest difference between the losses of a run's first steps, trained live, and the
    same steps of the saved run that ``metadata`` (from :func:`load_dates_checkpoint`) describes.

    Chapters 11 and 12 train a few steps themselves, then load the full run: a small gap says
    their steps are the saved run's first steps (the same data, seed and recipe).
    """
    if not isinstance(live, train.History):
        raise TypeError(f"live must be a train.History, got {type(live).__name__}")
    saved = metadata.get("losses") if isinstance(metadata, dict) else None
    if not isinstance(saved, list):
        raise TypeError("metadata must be the dict load_dates_checkpoint returns, with 'losses'")
    if not live.losses or len(live.losses) > len(saved):
        raise ValueError(
            f"live holds {len(live.losses)} steps; compare 1 to {len(saved)}, the saved run's steps"
        )
    first = saved[: len(live.losses)]  # the same steps of the saved run
    return max(abs(a - b) for a, b in zip(live.losses, first, strict=True))
