"""Training: a generic loop with a progress bar, and the pieces of sequence-to-sequence training."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from attention_book import validation


@dataclass
class History:
    """What a training run leaves behind: the loss after every step."""

    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 10% of steps (at least one): less noisy than the last step."""
        if not self.losses:
            raise ValueError("no training step has been recorded")
        tail = max(1, len(self.losses) // 10)
        return sum(self.losses[-tail:]) / tail


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a ``with`` block with ``model`` in eval mode, then restore its mode.

    The book's rule: every decoding function reads the model in eval mode (no dropout) and
    leaves its mode as it found it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _check_positive_float(name: str, x: object, hint: str) -> None:
    if not 0 < validation.check_float(name, x) < math.inf:
        raise ValueError(f"{name} must be a positive finite float ({hint}), got {x}")


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, int], Tensor],
    steps: int,
    lr: float = 1e-3,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_grad_norm: float | None = 1.0,
    progress: bool = True,
    desc: str = "training",
) -> History:
    """Train ``model`` for ``steps`` steps of AdamW (or ``optimizer``); return the loss history.

    ``loss_fn(model, step)`` returns a scalar loss; ``scheduler`` is stepped every step;
    ``clip_grad_norm`` (None: off) clips the global gradient norm. The model ends in eval mode."""
    steps = validation.check_positive_int("steps", steps)
    if clip_grad_norm is not None:
        _check_positive_float("clip_grad_norm", clip_grad_norm, "None turns clipping off")
    if optimizer is None:
        _check_positive_float("lr", lr, "a negative rate would climb the loss")
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    history = History()
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=0.5)
    for step in bar:
        loss = loss_fn(model, step)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.losses.append(loss.item())
        if step % 25 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{history.losses[-1]:.4f}")
    model.eval()
    return history


# ------------------------------------------------------- sequence-to-sequence training


def _check_smoothing(smoothing: object) -> float:
    if not 0.0 <= validation.check_float("label_smoothing", smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing}")
    return float(smoothing)


def trim_padding(src: Tensor, pad_id: int) -> Tensor:
    """``(B, S) -> (B, S')``: the trailing columns that are padding in every row dropped."""
    used = (src != pad_id).any(dim=0).nonzero()  # (S,) -> (n, 1): columns holding a token
    length = int(used.max()) + 1 if used.numel() else 1
    return src[:, :length]  # (B, S) -> (B, length)


def teacher_forcing(tgt: Tensor) -> tuple[Tensor, Tensor]:
    """``tgt (B, T + 1)`` -> ``(decoder_input, labels)``, ``tgt[:, :-1]`` and ``tgt[:, 1:]``."""
    validation.check_ids("tgt", tgt)
    if tgt.shape[1] < 2:
        raise ValueError(f"tgt needs at least <bos> and one token, got shape {tuple(tgt.shape)}")
    return tgt[:, :-1], tgt[:, 1:]  # (B, T + 1) -> (B, T), (B, T)


def smoothed_targets(labels: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """``(...) -> (..., V)``: ``(1 - smoothing) onehot + smoothing / V`` (Szegedy et al., 2016),
    as ``F.cross_entropy(label_smoothing=)`` does."""
    validation.check_positive_int("num_classes", num_classes)
    _check_smoothing(smoothing)
    if not isinstance(labels, Tensor) or labels.dtype != torch.long:
        raise TypeError("labels must be a LongTensor of class ids")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {int(labels.min())}..{int(labels.max())}"
        )
    onehot = F.one_hot(labels, num_classes).float()  # (...) -> (..., V)
    return (1.0 - smoothing) * onehot + smoothing / num_classes  # (..., V)


def sequence_loss(
    logits: Tensor, labels: Tensor, pad_id: int = 0, label_smoothing: float = 0.0
) -> Tensor:
    """Mean cross-entropy of ``logits (B, T, V)`` against ``labels (B, T)``, ``pad_id`` ignored.

    ValueError if every label is ``pad_id``."""
    label_smoothing = _check_smoothing(label_smoothing)
    pad_id = validation.check_int("pad_id", pad_id)
    validation.check_ids("labels", labels)
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got {getattr(logits, 'shape', logits)}")
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} need the same (B, T)"
        )
    if not bool((labels != pad_id).any()):  # the mean over no token would be 0 / 0 = NaN
        raise ValueError(
            f"every label of shape {tuple(labels.shape)} is pad_id={pad_id}: "
            "there is no token to score"
        )
    V = logits.shape[-1]
    return F.cross_entropy(
        logits.reshape(-1, V),  # (B, T, V) -> (B * T, V)
        labels.reshape(-1),  # (B, T) -> (B * T,)
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
    )


def seq2seq_loss(
    model: nn.Module, src: Tensor, tgt: Tensor, pad_id: int = 0, label_smoothing: float = 0.0
) -> Tensor:
    """The teacher-forced loss of ``model(src, decoder_input)`` on ``tgt (B, T + 1)``."""
    label_smoothing = _check_smoothing(label_smoothing)
    pad_id = validation.check_int("pad_id", pad_id)
    decoder_input, labels = teacher_forcing(tgt)  # (B, T), (B, T)
    logits = model(src, decoder_input)  # (B, T, V)
    return sequence_loss(logits, labels, pad_id, label_smoothing)


def lm_loss(model: nn.Module, inputs: Tensor, labels: Tensor, pad_id: int = 0) -> Tensor:
    """Mean cross-entropy of ``model(inputs)`` ``(B, T, V)`` against ``labels (B, T)``, ``pad_id``
    ignored."""
    return sequence_loss(model(inputs), labels, pad_id)  # (B, T, V) vs (B, T)


def batch_loss_fn(
    inputs: Tensor,
    targets: Tensor,
    batch_size: int,
    *,
    task: str = "seq2seq",
    pad_id: int = 0,
    label_smoothing: float = 0.0,
    seed: int = 0,
) -> Callable[[nn.Module, int], Tensor]:
    """A seeded ``loss_fn(model, step)`` for :func:`fit` that samples ``batch_size`` rows.

    Each batch's all-padding trailing columns are trimmed (:func:`trim_padding`). ``task`` is
    ``"seq2seq"`` (``targets (N, T + 1)``, :func:`seq2seq_loss`) or ``"lm"`` (``targets (N, S)``
    the next tokens, :func:`lm_loss`)."""
    task = validation.check_choice("task", task, ("seq2seq", "lm"))
    validation.check_ids("inputs", inputs)
    if task == "seq2seq":
        decoder_input, labels = teacher_forcing(targets)  # (N, T), (N, T)
    else:
        decoder_input, labels = None, validation.check_ids("targets", targets)
        if inputs.shape != targets.shape:
            raise ValueError(
                f"inputs {tuple(inputs.shape)} and labels {tuple(targets.shape)} differ in shape"
            )
    batch_size = validation.check_positive_int("batch_size", batch_size)
    pad_id = validation.check_int("pad_id", pad_id)
    label_smoothing = _check_smoothing(label_smoothing)
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} need the same "
            f"number of rows"
        )
    if batch_size > inputs.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the {inputs.shape[0]} training rows")
    generator = torch.Generator().manual_seed(validation.check_int("seed", seed))

    def loss_fn(model: nn.Module, step: int) -> Tensor:
        rows = torch.randperm(inputs.shape[0], generator=generator)[:batch_size]  # (batch_size,)
        batch = trim_padding(inputs[rows], pad_id)  # (N, S) -> (batch_size, S')
        if decoder_input is None:  # a language model: its labels are trimmed with its inputs
            logits = model(batch)  # (batch_size, S', V)
            return sequence_loss(logits, labels[rows, : batch.shape[1]], pad_id, label_smoothing)
        logits = model(batch, decoder_input[rows])  # (batch_size, T, V)
        return sequence_loss(logits, labels[rows], pad_id, label_smoothing)

    return loss_fn


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, final_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the optimiser's rate, then cosine decay to ``final_ratio`` of it.

    The paper decays as 1/sqrt(step) (section 5.3); a cosine suits a run of fixed length."""
    warmup_steps = validation.check_non_negative_int("warmup_steps", warmup_steps)
    total_steps = validation.check_positive_int("total_steps", total_steps)
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps={total_steps} must exceed warmup_steps={warmup_steps}")
    if not 0.0 <= validation.check_float("final_ratio", final_ratio) <= 1.0:
        raise ValueError(f"final_ratio must be in [0, 1], got {final_ratio}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
