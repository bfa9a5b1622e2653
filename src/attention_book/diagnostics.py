"""Measures of an attention distribution: its entropy (``log S`` when uniform, 0 when one-hot),
and the softmax Jacobian ``diag(w) - w wᵀ``, which vanishes as the weights saturate."""

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
    """Entropy in nats of each distribution along ``dim``: ``(..., T, S) -> (..., T)``.

    ``0 log 0 = 0``: masked keys add nothing, and an all-zero row has entropy 0."""
    dim = validation.check_int("dim", dim)
    w = _check_weights(weights, dim)
    # log(1) = 0 stands in for log(0) where w = 0: 0 * log 0 would be 0 * -inf = NaN.
    log_w = torch.log(torch.where(w > 0, w, torch.ones_like(w)))
    return -(w * log_w).sum(dim=dim)  # (..., T, S) -> (..., T)


def softmax_jacobian(weights: Tensor) -> Tensor:
    """``(..., n) -> (..., n, n)``: ``J[..., i, j] = dw_i/ds_j = w_i (δ_ij - w_j)``.

    The diagonal uses the sum of the other weights instead of ``1 - w_i``, which cancels when
    ``w_i`` rounds to 1 (in float64, ``softmax([0, -40])`` has ``w_0 == 1.0``)."""
    w = _check_weights(weights, -1)
    n = w.shape[-1]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=w.device)  # (n, n)
    outer = w.unsqueeze(-1) * w.unsqueeze(-2)  # (..., n, 1) * (..., 1, n) -> (..., n, n)
    others = (w.unsqueeze(-2) * off_diagonal).sum(dim=-1)  # (..., 1, n) -> (..., n, n) -> (..., n)
    return torch.diag_embed(w * others) - outer * off_diagonal  # (..., n) -> (..., n, n)
