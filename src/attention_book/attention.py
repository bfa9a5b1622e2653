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


def _check_float_tensor(name: str, x: object) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


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
    _check_float_tensor("x", x)
    return _softmax(x, dim, "softmax input")


def _softmax(x: Tensor, dim: int, what: str) -> Tensor:
    """:func:`softmax` of a float tensor its caller has checked; ``what`` names x in errors."""
    if x.numel() == 0:  # e.g. no keys (S = 0): nothing to weigh, and amax refuses an empty dim
        return torch.zeros_like(x)
    x_max = x.amax(dim=dim, keepdim=True)
    # The maximum propagates NaN and +inf, so checking the (smaller) row maxima checks all of x.
    if torch.isnan(x_max).any() or torch.isposinf(x_max).any():
        raise ValueError(
            f"{what} must be finite or -inf, but holds NaN or +inf "
            f"(the largest finite {x.dtype} is {torch.finfo(x.dtype).max:.4g})"
        )
    # An all -inf row has max -inf, and -inf - (-inf) is NaN: shift such rows by 0 instead.
    x_max = torch.where(torch.isfinite(x_max), x_max, torch.zeros_like(x_max))
    e = torch.exp(x - x_max)
    total = e.sum(dim=dim, keepdim=True)
    # total is 0 only where every entry of the row is exp(-inf) = 0; dividing by 1 keeps it 0.
    return e / torch.where(total > 0, total, torch.ones_like(total))


def causal_mask(n: int, device: torch.device | str | None = None) -> Tensor:
    """A ``(n, n)`` bool mask, True on and below the diagonal: position t may attend to 0..t.

    Args:
        n: sequence length, a positive int.
        device: where to create the mask.

    Returns:
        ``torch.bool`` tensor of shape ``(n, n)``.
    """
    n = validation.check_positive_int("n", n)
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def check_attention_inputs(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> None:
    """Raise a clear TypeError or ValueError if ``q, k, v, mask`` do not fit together.

    Args:
        q: ``(..., T, d_k)``; k: ``(..., S, d_k)``; v: ``(..., S, d_v)``;
        mask: bool, broadcastable to ``(..., T, S)``, or None.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_float_tensor(name, x)
        if x.dim() < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., len, dim), "
                f"got shape {tuple(x.shape)}"
            )
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(
            f"q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}"
        )
    if not q.device == k.device == v.device:
        raise ValueError(
            f"q, k and v must be on one device, got q {q.device}, k {k.device}, v {v.device}"
        )
    shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if q.shape[-1] == 0:
        raise ValueError(f"d_k must be at least 1 (the scale is 1/sqrt(d_k)); got {shapes}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension d_k; got {shapes}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys S; got {shapes}")
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the batch dimensions of q, k and v do not broadcast; got {shapes}"
        ) from None
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool (True = may attend), got {mask.dtype}")
    scores_shape = (*batch, q.shape[-2], k.shape[-2])
    try:
        fits = torch.broadcast_shapes(mask.shape, scores_shape) == torch.Size(scores_shape)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' "
            f"shape (..., T, S) = {scores_shape}; {shapes}"
        )


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ / √d_k) v, the attention of Vaswani et al. (2017), section 3.2.1.

    Args:
        q: queries, ``(..., T, d_k)``.
        k: keys, ``(..., S, d_k)``.
        v: values, ``(..., S, d_v)``.
        mask: optional bool tensor broadcastable to ``(..., T, S)``; True means "may attend".

    Returns:
        ``(output, weights)``: output is ``(..., T, d_v)``, weights is ``(..., T, S)``.
        Each row of weights sums to 1, or is all zero where the mask allows no key.
    """
    check_attention_inputs(q, k, v, mask)
    return attend(q, k, v, mask)


def attend(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0
) -> tuple[Tensor, Tensor]:
    """:func:`scaled_dot_product_attention` without the argument checks.

    For callers that have checked their arguments themselves (a layer checks its inputs once,
    then attends). Same arguments and results, plus ``dropout``: the probability of dropping
    each attention weight before the product with ``v`` (pass it only in training); the
    returned weights are then the dropped ones, whose rows no longer sum to 1.
    """
    # Scale before the product, as PyTorch does: q kᵀ itself can overflow in float16
    # (64 products of 40 x 40 make 102,400 > 65,504) where q kᵀ / √d_k does not.
    scaled_keys = k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., S, d_k) -> (..., d_k, S)
    scores = q @ scaled_keys  # (..., T, d_k) @ (..., d_k, S) -> (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # forbidden pairs get exp(-inf) = 0
    weights = _softmax(scores, -1, "the scores q kᵀ / √d_k (from q and k)")  # (..., T, S)
    if dropout > 0.0:
        weights = torch.nn.functional.dropout(weights, dropout)  # (..., T, S)
    output = weights @ v  # (..., T, S) @ (..., S, d_v) -> (..., T, d_v)
    if not torch.isfinite(output).all():  # the scores were finite, so v is to blame
        raise ValueError(
            f"attention output is not finite: v holds NaN or inf, or weights @ v overflows "
            f"{v.dtype}"
        )
    return output, weights
