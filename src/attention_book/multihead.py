"""Multi-head attention (Vaswani et al., 2017, section 3.2.2): the one attention module of every
model in the book (encoder-decoder, GPT, BERT, LLaMA).

``num_kv_heads`` < H gives grouped-query attention (Ainslie et al., 2023; 1 = multi-query),
``rope=(cos, sin)`` rotary positions, ``bias=False`` LLaMA's bias-free projections.

The key-value cache protocol: ``cache.length`` (positions cached), ``cache.update(layer, k, v)
-> (k, v)`` (append ``(B, H_kv, T, d_k)`` and return all ``(B, H_kv, length + T, d_k)``) and
``cache.memory_bytes()``. :class:`attention_book.generation.KVCache` is one. Each module
finds its entry by its own ``layer_idx``, as transformers' ``LlamaAttention`` does.

Two optional extensions (:mod:`attention_book.serving`): ``cache.rotates_keys = True`` (the
cache keeps keys before RoPE; the model rotates the keys it returns by their position in the
cache, and ``cache.capacity`` tells the most positions it holds) and ``cache.crop(length)``
(forget the positions from ``length`` on)."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import attention, positional, validation


class KVCacheLike(Protocol):
    """The key-value cache protocol of this module's docstring."""

    @property
    def length(self) -> int: ...

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]: ...

    def memory_bytes(self) -> int: ...


def repeat_kv(x: Tensor, repeats: int) -> Tensor:
    """``(B, H_kv, S, d) -> (B, H_kv * repeats, S, d)``: head h is ``x[:, h // repeats]``."""
    repeats = validation.check_positive_int("repeats", repeats)
    if repeats == 1:
        return x
    B, H_kv, S, d = x.shape
    x = x[:, :, None].expand(B, H_kv, repeats, S, d)  # (B, H_kv, 1, S, d) -> (B, H_kv, r, S, d)
    return x.reshape(B, H_kv * repeats, S, d)  # (B, H, S, d)


class MultiHeadAttention(nn.Module):
    """H attentions of width d_k = d_model / num_heads, projected by ``w_q, w_k, w_v`` and mixed by
    ``w_o``.

    Masks are bool, True = may attend: ``(T, S)`` exactly, or 4-D broadcastable to
    ``(B, H, T, S)`` (padding: ``(B, 1, 1, S)``). A ``(B, S)`` mask is refused: with B == T it
    would silently be read as ``(T, S)``.

    Args:
        num_kv_heads: key/value heads, dividing ``num_heads``; None means ``num_heads``.
        layer_idx: this module's entry in a key-value cache."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        bias: bool = True,
        dropout: float = 0.0,
        *,
        num_kv_heads: int | None = None,
        layer_idx: int = 0,
    ):
        super().__init__()
        d_model = validation.check_positive_int("d_model", d_model)
        num_heads = validation.check_positive_int("num_heads", num_heads)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        num_kv_heads = validation.check_positive_int("num_kv_heads", num_kv_heads)
        validation.check_heads(d_model, num_heads, num_kv_heads)
        bias = validation.check_bool("bias", bias)
        self.dropout = validation.check_probability("dropout", dropout)
        self.layer_idx = validation.check_non_negative_int("layer_idx", layer_idx)
        self.d_model, self.num_heads, self.d_k = d_model, num_heads, d_model // num_heads
        self.num_kv_heads = num_kv_heads
        d_kv = num_kv_heads * self.d_k
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_kv, bias=bias)
        self.w_v = nn.Linear(d_model, d_kv, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def _check(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        named = (("query", query), ("key", key), ("value", value))
        for name, x in named:
            validation.check_float_tensor(name, x)
        shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        for name, x in named:
            if x.dim() != 3 or x.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must be (B, len, d_model={self.d_model}) (batch-first); got {shapes}"
                )
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(
                f"query, key and value need the same B, key and value the same S; {shapes}"
            )
        dtype = self.w_o.weight.dtype
        if not query.dtype == key.dtype == value.dtype == dtype:
            raise TypeError(
                f"query, key and value must have the module's dtype {dtype}; got query "
                f"{query.dtype}, key {key.dtype}, value {value.dtype}"
            )

    def _check_mask(self, mask: object, B: int, T: int, S: int) -> None:
        scores = (B, self.num_heads, T, S)
        hint = (
            f"as MultiHeadAttention takes it, a 2-D mask must be (T, S) = {(T, S)} exactly, a "
            f"4-D mask broadcastable to (B, H, T, S) = {scores}; a (B, S) padding mask is "
            f"passed as (B, 1, 1, S)"
        )
        validation.check_mask(mask, scores, hint)
        if mask.dim() not in (2, 4) or (mask.dim() == 2 and tuple(mask.shape) != (T, S)):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast: {hint}")

    def _split(self, x: Tensor, heads: int) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, heads, self.d_k).transpose(1, 2)  # (B, L, D) -> (B, heads, L, d_k)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
        cache: KVCacheLike | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query (B, T, D)`` to ``key, value (B, S, D)``.

        Args:
            mask: ``(T, S)`` or broadcastable to ``(B, H, T, S)`` (see the class).
            need_weights: also return the weights, computed explicitly; otherwise the fused kernel
                runs when no dropout applies (with dropout both paths are explicit: one seed, one
                result). NaN or inf inputs raise the same ValueError on both paths.
            cache: keys and values are appended at ``self.layer_idx``; S = ``cache.length + T``.
            rope: ``(cos, sin)``, each ``(T, d_k)``, rotating queries and keys before the cache;
                with a cache whose ``rotates_keys`` is True, ``(S, d_k)``: keys are rotated
                after the cache by their place in it, queries by the last T rows.

        Returns:
            ``(output (B, T, D), weights (B, H, T, S) or None)``."""
        self._check(query, key, value)
        B, T, _ = query.shape
        q = self._split(self.w_q(query), self.num_heads)  # (B, T, D) -> (B, H, T, d_k)
        k = self._split(self.w_k(key), self.num_kv_heads)  # (B, S, D) -> (B, H_kv, S, d_k)
        v = self._split(self.w_v(value), self.num_kv_heads)  # (B, S, D) -> (B, H_kv, S, d_k)
        # A cache with rotates_keys (serving.SinkCache) keeps keys unrotated; rope then covers
        # every position S of the keys it returns, and the queries are its last T.
        in_cache = rope is not None and getattr(cache, "rotates_keys", False)
        if rope is not None:
            cos, sin = rope[0][-T:], rope[1][-T:]  # (T, d_k) each
            q = positional.rotate(q, cos, sin)
            if not in_cache:
                k = positional.rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, H_kv, S_cached + S, d_k) each
        if in_cache:
            k = positional.rotate(k, *rope)  # key j turned by its position j in the cache
        if mask is not None:
            self._check_mask(mask, B, T, k.shape[-2])
        p = self.dropout if self.training else 0.0
        repeats = self.num_heads // self.num_kv_heads
        if need_weights or p > 0.0:
            k, v = repeat_kv(k, repeats), repeat_kv(v, repeats)  # (B, H, S, d_k) each
            heads, weights = attention.scaled_dot_product_attention(q, k, v, mask, dropout=p)
        else:
            heads, weights = _fused_attention(q, k, v, mask, repeats), None  # (B, H, T, d_k)
            # NaN or inf in k or v makes the output non-finite; a NaN query row can come out
            # finite (and wrong) without a mask. Either way the explicit path decides: it
            # raises its clear error, or gives its answer (a NaN key may be masked out).
            if not (torch.isfinite(heads).all() and torch.isfinite(q).all()):
                k, v = repeat_kv(k, repeats), repeat_kv(v, repeats)  # (B, H, S, d_k) each
                heads, _ = attention.scaled_dot_product_attention(q, k, v, mask)
        concat = heads.transpose(1, 2).reshape(B, T, self.num_heads * self.d_k)  # (B, T, H d_k)
        return self.w_o(concat), (weights if need_weights else None)  # (B, T, D)


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, repeats: int) -> Tensor:
    """PyTorch's fused kernel, the one fast path. Fully masked queries get zeros, as explicitly.

    The kernel's answer for them varies by version and backend (NaN or zeros), so they attend
    everywhere and are zeroed after. One query without a mask needs no copied keys."""
    B, H, T, d_k = q.shape
    if mask is None and T == 1 and repeats > 1:
        q = q.view(B, H // repeats, repeats, d_k)  # (B, H, 1, d_k) -> (B, H_kv, r, d_k)
        heads = F.scaled_dot_product_attention(q, k, v)  # (B, H_kv, r, d_k)
        return heads.view(B, H, 1, d_k)  # (B, H, 1, d_k)
    k, v = repeat_kv(k, repeats), repeat_kv(v, repeats)  # (B, H, S, d_k) each
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v)  # (B, H, T, d_k)
    empty = ~mask.any(dim=-1, keepdim=True)  # (..., T, 1)
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty)  # (B, H, T, d_k)
    return heads.masked_fill(empty, 0.0) if empty.any() else heads
