"""Scaled dot-product attention: the core every later chapter builds on.

Batch-first with any leading dimensions ``...``: ``q (..., T, d_k)``, ``k (..., S, d_k)``,
``v (..., S, d_v)``. Masks are bool, broadcastable to ``(..., T, S)``, True = "may attend"
(as in ``F.scaled_dot_product_attention``). A query with no allowed key gets zeros, never NaN."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attention_book import validation


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along ``dim``, minus the row maximum so no ``exp`` overflows.

    ``-inf`` entries get weight 0; an all ``-inf`` (or empty) slice gets zeros instead of NaN."""
    validation.check_float_tensor("x", x)
    if x.numel() == 0:  # e.g. no keys (S = 0): nothing to weigh, and amax refuses an empty dim
        return torch.zeros_like(x)
    x_max = x.amax(dim=dim, keepdim=True)
    # The maximum propagates NaN and +inf, so checking the (smaller) row maxima checks all of x.
    if torch.isnan(x_max).any() or torch.isposinf(x_max).any():
        raise ValueError(
            f"softmax input (in attention: the scores q kᵀ / √d_k) must be finite or -inf, "
            f"but holds NaN or +inf "
            f"(the largest finite {x.dtype} is {torch.finfo(x.dtype).max:.4g})"
        )
    # An all -inf row has max -inf, and -inf - (-inf) is NaN: shift such rows by 0 instead.
    x_max = torch.where(torch.isfinite(x_max), x_max, torch.zeros_like(x_max))
    e = torch.exp(x - x_max)
    total = e.sum(dim=dim, keepdim=True)
    # total is 0 only where every entry of the row is exp(-inf) = 0; dividing by 1 keeps it 0.
    return e / torch.where(total > 0, total, torch.ones_like(total))


def causal_mask(
    T: int, S: int | None = None, offset: int = 0, device: torch.device | str | None = None
) -> Tensor:
    """Bool ``(T, S)``, True where query t (at ``offset + t``) may read key j <= offset + t.

    ``S`` defaults to ``offset + T``; ``offset`` is the cached length (0: the lower triangle)."""
    T = validation.check_positive_int("T", T)
    offset = validation.check_non_negative_int("offset", offset)
    S = offset + T if S is None else validation.check_positive_int("S", S)
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(offset)


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ / √d_k) v (Vaswani et al., 2017, section 3.2.1).

    Args:
        q, k, v: ``(..., T, d_k)``, ``(..., S, d_k)``, ``(..., S, d_v)``.
        mask: bool, broadcastable to ``(..., T, S)``; True = "may attend".
        dropout: drop probability on the weights (training only); the dropped weights are returned.

    Returns:
        ``(output (..., T, d_v), weights (..., T, S))``; rows sum to 1, or 0 where all masked."""
    validation.check_attention_inputs(q, k, v, mask)
    dropout = validation.check_probability("dropout", dropout)
    # Scale before the product, as PyTorch does: q kᵀ itself can overflow in float16
    # (64 products of 40 x 40 make 102,400 > 65,504) where q kᵀ / √d_k does not.
    scaled_keys = k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., S, d_k) -> (..., d_k, S)
    scores = q @ scaled_keys  # (..., T, d_k) @ (..., d_k, S) -> (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # forbidden pairs get exp(-inf) = 0
    weights = softmax(scores, -1)  # (..., T, S)
    if dropout > 0.0:
        weights = torch.nn.functional.dropout(weights, dropout)  # (..., T, S)
    output = weights @ v  # (..., T, S) @ (..., S, d_v) -> (..., T, d_v)
    if not torch.isfinite(output).all():  # the scores were finite, so v is to blame
        raise ValueError(
            f"attention output is not finite: v holds NaN or inf, or weights @ v overflows "
            f"{v.dtype}"
        )
    return output, weights
