"""Measures of an attention distribution: how spread out it is, and how well gradients pass it.

A row of attention weights is a probability vector over the keys. Two numbers say how it
behaves during training:

* its **entropy**: ``log S`` when the weights are uniform over ``S`` keys, 0 when one key
  takes all the weight (a saturated softmax);
* the **Jacobian of softmax**, ``diag(w) - w wᵀ`` for weights ``w``, through which every
  gradient reaches the scores ``s``; it vanishes as the weights become one-hot.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attention_book import validation

#: How far a slice of weights may sum from 1 (or from 0, for a fully masked row).
SUM_TOLERANCE = 1e-3


def _check_weights(weights: object, dim: int) -> Tensor:
    if not isinstance(weights, Tensor):
        raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
    if not weights.is_floating_point():
        raise TypeError(f"weights must be a floating-point tensor, got dtype {weights.dtype}")
    if weights.dim() == 0:
        raise ValueError("weights must have at least one dimension (the keys), got a scalar")
    if not -weights.dim() <= dim < weights.dim():
        raise ValueError(f"dim {dim} is out of range for weights of shape {tuple(weights.shape)}")
    if torch.isnan(weights).any() or (weights < 0).any():
        raise ValueError(
            f"weights of shape {tuple(weights.shape)} must be non-negative and not NaN; "
            "pass softmax outputs, not scores"
        )
    totals = weights.sum(dim=dim)
    sums_to_one = (totals - 1).abs() <= SUM_TOLERANCE
    sums_to_zero = totals.abs() <= SUM_TOLERANCE
    if not (sums_to_one | sums_to_zero).all():
        raise ValueError(
            f"each slice of weights along dim {dim} must sum to 1 (or to 0 for a fully "
            f"masked row); got sums from {totals.min().item():.4g} to {totals.max().item():.4g} "
            f"for weights of shape {tuple(weights.shape)}"
        )
    return weights


def attention_entropy(weights: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy, in nats, of each attention distribution along ``dim``.

    Uses the convention ``0 · log 0 = 0``, so keys with zero weight (masked keys) add nothing
    and a fully masked row (all zeros) has entropy 0.

    Args:
        weights: attention weights of any shape, e.g. ``(..., T, S)``; every slice along
            ``dim`` is non-negative and sums to 1 (or is all zero).
        dim: the dimension that holds the keys.

    Returns:
        The entropies, shaped like ``weights`` without ``dim`` (``(..., T)`` for the default).
        They lie between 0 (one-hot) and ``log S`` (uniform over ``S`` keys).
    """
    dim = validation.check_int("dim", dim)
    w = _check_weights(weights, dim)
    # log(1) = 0 stands in for log(0) where w = 0: 0 * log 0 would be 0 * -inf = NaN.
    log_w = torch.log(torch.where(w > 0, w, torch.ones_like(w)))
    return -(w * log_w).sum(dim=dim)  # (..., T, S) -> (..., T)


def softmax_jacobian(weights: Tensor) -> Tensor:
    """Jacobian of softmax along the last dimension, computed from its output.

    With scores ``s`` and weights ``w = softmax(s)`` (chapter 5's letters),
    ``∂w_i/∂s_j = w_i (δ_ij - w_j)``, that is ``diag(w) - w wᵀ``. It depends on ``s`` only
    through ``w``, which is why the weights are the argument.

    The diagonal ``w_i (1 - w_i)`` is computed as ``w_i · Σ_{j≠i} w_j``. The two are equal
    when the weights sum to 1, but ``1 - w_i`` cancels catastrophically when ``w_i`` is within
    rounding of 1: in float64, ``softmax([0, -40])`` has ``w_0 == 1.0`` exactly, so ``1 - w_0``
    is 0 although ``w_1 ≈ 4e-18`` is not. The sum of the other weights keeps every digit.

    Args:
        weights: softmax outputs ``w`` of shape ``(..., n)``; each last-dimension slice is
            non-negative and sums to 1 (or is all zero, which gives a zero Jacobian).

    Returns:
        ``(..., n, n)`` tensor ``J`` with ``J[..., i, j] = ∂w_i/∂s_j``. It is symmetric and its
        rows and columns sum to 0.
    """
    w = _check_weights(weights, -1)
    n = w.shape[-1]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=w.device)  # (n, n)
    outer = w.unsqueeze(-1) * w.unsqueeze(-2)  # (..., n, 1) * (..., 1, n) -> (..., n, n)
    others = (w.unsqueeze(-2) * off_diagonal).sum(dim=-1)  # (..., 1, n) -> (..., n, n) -> (..., n)
    return torch.diag_embed(w * others) - outer * off_diagonal  # (..., n) -> (..., n, n)
