"""Scaled dot-product attention, written to be read: the core every later chapter builds on.

Conventions (shared by the whole book):

* tensors are batch-first; any number of leading batch dimensions ``...`` is allowed;
* ``q`` is ``(..., T, d_k)``, ``k`` is ``(..., S, d_k)``, ``v`` is ``(..., S, d_v)``;
* a mask is a ``torch.bool`` tensor broadcastable to ``(..., T, S)`` where **True means "may
  attend"**, the convention of :func:`torch.nn.functional.scaled_dot_product_attention`;
* a query row with no allowed key gets all-zero weights and an all-zero output, never NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attention_book import validation


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim``.

    Subtracting the row maximum before ``exp`` changes nothing mathematically
    (the factor ``exp(-max)`` cancels) but keeps every exponent at most 0, so nothing overflows.
    Entries equal to ``-inf`` get weight 0; a row that is entirely ``-inf`` (or empty) gets
    all-zero weights instead of the NaN that ``0 / 0`` would give.

    Args:
        x: scores of any shape, floating point.
        dim: the dimension that is normalised.

    Returns:
        A tensor of the same shape as ``x`` whose slices along ``dim`` sum to 1
        (or to 0 for an all ``-inf`` slice).
    """
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
    """A ``(T, S)`` bool mask, True where query t (at position ``offset + t``) may read key j.

    Key j is allowed when ``j <= offset + t``. Without a cache ``offset`` is 0 and S = T: the
    lower triangle. With ``offset`` positions cached, the T new queries read all of them too.

    Args:
        T: the number of queries, a positive int.
        S: the number of keys, ``offset + T`` by default.
        offset: the position of the first query (the cached length), a non-negative int.
        device: where to create the mask.

    Returns:
        ``torch.bool`` tensor of shape ``(T, S)``.
    """
    T = validation.check_positive_int("T", T)
    offset = validation.check_non_negative_int("offset", offset)
    S = offset + T if S is None else validation.check_positive_int("S", S)
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(offset)


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ / √d_k) v, the attention of Vaswani et al. (2017), section 3.2.1.

    Args:
        q: queries, ``(..., T, d_k)``.
        k: keys, ``(..., S, d_k)``.
        v: values, ``(..., S, d_v)``.
        mask: optional bool tensor broadcastable to ``(..., T, S)``; True means "may attend".
        dropout: the probability of dropping each weight before the product with ``v`` (pass
            it only in training); the weights returned are then the dropped ones.

    Returns:
        ``(output, weights)``: output is ``(..., T, d_v)``, weights is ``(..., T, S)``.
        Each row of weights sums to 1, or is all zero where the mask allows no key.
    """
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
