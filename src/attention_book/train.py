"""A small, generic training loop with a progress bar, shared by every chapter that trains."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
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
    """Train ``model`` for ``steps`` optimiser steps and return the loss history.

    Args:
        model: the module to train; it is put in training mode, then back in eval mode.
        loss_fn: called as ``loss_fn(model, step)``; draws or indexes its own batch and
            returns a scalar loss tensor.
        steps: number of optimiser steps, a positive int.
        lr: learning rate of the default optimiser, AdamW, a positive float.
        optimizer: an optimiser to use instead of the default.
        scheduler: optional learning-rate scheduler, stepped once per step.
        clip_grad_norm: clip the gradient's global norm to this positive value; None turns
            clipping off.
        progress: show a tqdm progress bar with the running loss.
        desc: the progress bar's label.

    Returns:
        A :class:`History` with one loss per step.
    """
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
