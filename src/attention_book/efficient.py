"""Exact attention without the (T, S) matrix: FlashAttention's tiles and online softmax
(Milakov and Gimelshein, 2018, for the running maximum and normaliser; Rabe and Staats, 2021,
and Dao et al., 2022, for carrying the weighted sum of the values along). Causal tiles above
the diagonal are skipped."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attention_book import validation


def blockwise_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    causal: bool = False,
    block_size: int = 64,
) -> Tensor:
    """Attention tile by tile: ``q (..., T, d_k)``, ``k (..., S, d_k)``, ``v (..., S, d_v)`` ->
    ``(..., T, d_v)``.

    Equals ``attention.scaled_dot_product_attention(q, k, v, m)[0]`` for ``m`` the ``mask``
    combined with ``causal`` (top-left aligned), without allocating anything of size T x S;
    raises where the explicit version does."""
    validation.check_attention_inputs(q, k, v, mask)
    validation.check_positive_int("block_size", block_size)
    causal = validation.check_bool("causal", causal)
    T, S, d_k = q.shape[-2], k.shape[-2], q.shape[-1]
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if mask is not None:
        mask = mask.expand(*batch, T, S)  # a view, so that tiles can be sliced: nothing is copied
    # A skipped tile contributes exactly 0 * v; that is not 0 where v holds NaN or inf, so such
    # values must reach every output row, as they do in the explicit product weights @ v.
    skip = causal and bool(torch.isfinite(v).all())
    out = q.new_empty((*batch, T, v.shape[-1]))  # (..., T, d_v)
    for q0 in range(0, T, block_size):
        q1 = min(q0 + block_size, T)
        q_tile = q[..., q0:q1, :]  # (..., b_q, d_k)
        running_max = q.new_full((*batch, q1 - q0, 1), float("-inf"))  # (..., b_q, 1)
        running_sum = q.new_zeros((*batch, q1 - q0, 1))  # (..., b_q, 1)
        acc = q.new_zeros((*batch, q1 - q0, v.shape[-1]))  # (..., b_q, d_v)
        last_key = min(q1, S) if skip else S  # keys from q1 on come after every query here
        for k0 in range(0, last_key, block_size):
            k1 = min(k0 + block_size, S)
            # Scale the keys before the product, as the explicit version does (float16 overflow).
            k_tile = k[..., k0:k1, :].transpose(-2, -1) / math.sqrt(d_k)  # (..., d_k, b_k)
            scores = q_tile @ k_tile  # (..., b_q, d_k) @ (..., d_k, b_k) -> (..., b_q, b_k)
            allowed = None if mask is None else mask[..., q0:q1, k0:k1]  # (..., b_q, b_k)
            if causal and k1 - 1 > q0:  # the tile reaches above the diagonal
                rows = torch.arange(q0, q1, device=q.device)[:, None]  # (b_q, 1)
                cols = torch.arange(k0, k1, device=q.device)[None, :]  # (1, b_k)
                allowed = cols <= rows if allowed is None else allowed & (cols <= rows)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            # torch.maximum propagates NaN and +inf, so the final running_max reveals them.
            new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
            # Rows that have seen no allowed key yet keep a max of -inf; shift them by 0 instead.
            shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
            correction = torch.exp(running_max - shift)  # rescales what was summed so far
            p = torch.exp(scores - shift)  # (..., b_q, b_k)
            running_sum = running_sum * correction + p.sum(dim=-1, keepdim=True)
            acc = acc * correction + p @ v[..., k0:k1, :]  # (..., b_q, b_k) @ (..., b_k, d_v)
            running_max = new_max
        if not (running_max < float("inf")).all():  # False for NaN and +inf, True for -inf
            raise ValueError(
                "attention scores contain NaN or +inf (NaN or infinite q or k, or q kᵀ "
                "overflowing); scores must be finite or -inf"
            )
        # running_sum is 0 only for a query with no allowed key; dividing by 1 keeps it at 0.
        out[..., q0:q1, :] = acc / torch.where(running_sum > 0, running_sum, 1.0)
    if not torch.isfinite(out).all():  # the scores were finite, so v is to blame
        raise ValueError(
            f"attention output is not finite: v holds NaN or +inf/-inf, or weights @ v "
            f"overflows {v.dtype}"
        )
    return out


def attention_matrix_bytes(
    batch: int, num_heads: int, T: int, S: int, bytes_per_element: int = 4
) -> int:
    """Bytes of the attention weights, B x H x T x S numbers (float32 by default)."""
    for name, n in (
        ("batch", batch),
        ("num_heads", num_heads),
        ("T", T),
        ("S", S),
        ("bytes_per_element", bytes_per_element),
    ):
        validation.check_positive_int(name, n)
    return batch * num_heads * T * S * bytes_per_element
