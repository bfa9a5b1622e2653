"""Attention without the (T, S) matrix: the blockwise, online-softmax idea behind FlashAttention.

Plain attention materialises every score, T x S numbers per head. Processing the keys in blocks
and keeping, for every query, a running maximum, a running sum of exponentials and a running
weighted sum of values gives the same output while holding only a (T, block) slice of scores at
a time (Dao et al., 2022; Milakov and Gimelshein, 2018).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attention_book import attention, validation


def blockwise_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, block_size: int = 64
) -> Tensor:
    """Scaled dot-product attention computed over key blocks with an online softmax.

    Args:
        q: ``(..., T, d_k)``; k: ``(..., S, d_k)``; v: ``(..., S, d_v)``.
        mask: bool, broadcastable to ``(..., T, S)``; True means "may attend".
        block_size: number of keys processed at once, a positive int.

    Returns:
        ``(..., T, d_v)``, equal to ``attention.scaled_dot_product_attention(q, k, v, mask)[0]``;
        a query with no allowed key gets a zero output.
    """
    attention.check_attention_inputs(q, k, v, mask)
    validation.check_positive_int("block_size", block_size)
    T, S = q.shape[-2], k.shape[-2]
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if mask is not None:
        mask = mask.expand(*batch, T, S)  # (..., T, S), a view: nothing is copied
    scale = 1.0 / math.sqrt(q.shape[-1])
    running_max = q.new_full((*batch, T, 1), float("-inf"))  # (..., T, 1)
    running_sum = q.new_zeros((*batch, T, 1))  # (..., T, 1)
    acc = q.new_zeros((*batch, T, v.shape[-1]))  # (..., T, d_v)
    for start in range(0, S, block_size):
        stop = min(start + block_size, S)
        scores = q @ k[..., start:stop, :].transpose(-2, -1) * scale  # (..., T, b)
        if mask is not None:
            scores = scores.masked_fill(~mask[..., start:stop], float("-inf"))
        new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))  # (..., T, 1)
        # Rows that have seen no allowed key yet keep a max of -inf; shift them by 0 instead.
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        correction = torch.exp(running_max - shift)  # rescales what was summed so far
        p = torch.exp(scores - shift)  # (..., T, b)
        running_sum = running_sum * correction + p.sum(dim=-1, keepdim=True)
        acc = acc * correction + p @ v[..., start:stop, :]  # (..., T, b) @ (..., b, d_v)
        running_max = new_max
    return acc / torch.where(running_sum > 0, running_sum, torch.ones_like(running_sum))


def attention_matrix_bytes(
    batch: int, num_heads: int, T: int, S: int, bytes_per_element: int = 4
) -> int:
    """Bytes needed to hold the attention weights, B x H x T x S numbers (float32 by default)."""
    for name, n in (
        ("batch", batch),
        ("num_heads", num_heads),
        ("T", T),
        ("S", S),
        ("bytes_per_element", bytes_per_element),
    ):
        validation.check_positive_int(name, n)
    return batch * num_heads * T * S * bytes_per_element
