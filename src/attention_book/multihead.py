"""Multi-head attention (Vaswani et al., 2017, section 3.2.2), batch-first.

MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W_O,
with head_h = Attention(Q W_Q^h, K W_K^h, V W_V^h).
The H heads are computed at once by projecting to D = H * d_k and viewing the last dimension as
(H, d_k). Masks follow :mod:`attention_book.attention`: bool, True means "may attend".

For generation one token at a time, ``forward`` can take a key-value cache (any object with
``update(layer, k, v) -> (k, v)``, such as :class:`attention_book.generation.KVCache`): the new
keys and values are appended to those of the earlier positions, and the queries attend to all.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import attention, validation


class KVCacheLike(Protocol):
    """What attention needs of a key-value cache: append one layer's keys and values."""

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]: ...


class MultiHeadAttention(nn.Module):
    """H scaled dot-product attentions in parallel, each of width d_k = d_model / num_heads.

    Three projections, as in the paper: ``w_q``, ``w_k`` and ``w_v`` map the inputs to the
    queries, keys and values of all heads at once, and ``w_o`` mixes the concatenated heads.

    Masks (bool, True = may attend) come in two shapes, and no other:

    * ``(T, S)``, exactly, shared by the whole batch and every head (a causal mask);
    * four dimensions broadcastable to ``(B, H, T, S)``: a key padding mask is ``(B, 1, 1, S)``,
      a per-example mask ``(B, 1, T, S)``.

    A ``(B, S)`` padding mask is refused rather than guessed at: when B equals T it would be
    read as ``(T, S)``, silently. Reshape it to ``(B, 1, 1, S)``.

    Args:
        d_model: D, the width of the inputs and of the output.
        num_heads: H; must divide ``d_model``.
        bias: give the four projections ``w_q, w_k, w_v, w_o`` a bias.
        dropout: dropout probability on the attention weights (training only).
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        d_model = validation.check_positive_int("d_model", d_model)
        num_heads = validation.check_positive_int("num_heads", num_heads)
        if d_model % num_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by num_heads={num_heads}: "
                f"each head needs d_k = d_model / num_heads to be a whole number"
            )
        if not 0.0 <= validation.check_float("dropout", dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.num_heads, self.d_k = d_model, num_heads, d_model // num_heads
        self.dropout = float(dropout)
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def _check(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        named = (("query", query), ("key", key), ("value", value))
        for name, x in named:
            if not isinstance(x, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if not x.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
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
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask must have dtype torch.bool (True = may attend), got {mask.dtype}"
            )
        scores = (B, self.num_heads, T, S)
        if mask.dim() == 2 and tuple(mask.shape) == (T, S):
            return
        if mask.dim() == 4:
            try:
                if torch.broadcast_shapes(mask.shape, scores) == scores:
                    return
            except RuntimeError:
                pass
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores (B, H, T, S) = "
            f"{scores} as MultiHeadAttention takes it: a 2-D mask must be (T, S) = {(T, S)} "
            f"exactly, a 4-D mask broadcastable to (B, H, T, S); a (B, S) padding mask is "
            f"passed as (B, 1, 1, S)"
        )

    def _split(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.d_k).transpose(1, 2)  # (B, L, D) -> (B, H, L, d_k)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = True,
        cache: KVCacheLike | None = None,
        layer: int = 0,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(B, T, D)``, of the module's dtype. NaN or inf in the inputs raises the
                same ValueError on both paths, never returns NaN.
            key: ``(B, S, D)``.
            value: ``(B, S, D)``.
            mask: bool, True means "may attend": ``(T, S)`` exactly, or four dimensions
                broadcastable to ``(B, H, T, S)``, such as a ``(B, 1, 1, S)`` padding mask.
            need_weights: return the ``(B, H, T, S)`` weights, computed explicitly. With False
                and no dropout to apply (eval mode, or ``dropout=0``) the fused
                ``torch.nn.functional.scaled_dot_product_attention`` computes the same output
                faster; with dropout both settings take the explicit path, so that one seed
                gives one result.
            cache: for self-attention during generation: ``cache.update(layer, k, v)`` receives
                this call's ``(B, H, T, d_k)`` keys and values and returns those of all
                ``S = S_cached + T`` positions, which the queries then attend to; ``mask`` must
                then fit ``(B, H, T, S)``.
            layer: this attention's index in the cache.

        Returns:
            ``(output, weights)``: output ``(B, T, D)``; weights ``(B, H, T, S)`` or None.
        """
        self._check(query, key, value)
        B, T, _ = query.shape
        q = self._split(self.w_q(query))  # (B, T, D) -> (B, H, T, d_k)
        k = self._split(self.w_k(key))  # (B, S, D) -> (B, H, S, d_k)
        v = self._split(self.w_v(value))  # (B, S, D) -> (B, H, S, d_k)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S, d_k) -> (B, H, S_cached + S, d_k)
        if mask is not None:
            self._check_mask(mask, B, T, k.shape[-2])
        p = self.dropout if self.training else 0.0
        if need_weights or p > 0.0:
            heads, weights = attention.attend(q, k, v, mask, dropout=p)  # (B, H, T, d_k)
        else:
            heads, weights = _fused_attention(q, k, v, mask), None  # (B, H, T, d_k)
            # NaN or inf in k or v makes the output non-finite; a NaN query row can come out
            # finite (and wrong) without a mask. Either way the explicit path decides: it
            # raises its clear error, or gives its answer (a NaN key may be masked out).
            if not (torch.isfinite(heads).all() and torch.isfinite(q).all()):
                heads, _ = attention.attend(q, k, v, mask)  # (B, H, T, d_k)
        concat = heads.transpose(1, 2).reshape(B, T, self.d_model)  # (B, H, T, d_k) -> (B, T, D)
        return self.w_o(concat), (weights if need_weights else None)  # (B, T, D)

    @classmethod
    def from_torch(cls, m: nn.MultiheadAttention) -> MultiHeadAttention:
        """Build an equivalent module from a ``torch.nn.MultiheadAttention``.

        PyTorch packs W_Q, W_K and W_V into one ``in_proj_weight`` of shape ``(3D, D)``; this
        splits it into the three projections. The copy has the same dropout. Note that the
        boolean ``attn_mask`` and ``key_padding_mask`` of ``nn.MultiheadAttention`` mean the
        opposite of ours (True = blocked): pass ``~mask`` to it. (The boolean ``attn_mask`` of
        ``torch.nn.functional.scaled_dot_product_attention`` uses our convention, True = may
        attend, which is why ``forward`` passes its mask to that function unchanged.)

        Args:
            m: a PyTorch module with ``kdim == vdim == embed_dim``, without ``add_bias_kv`` or
               ``add_zero_attn``.

        Returns:
            A ``MultiHeadAttention`` whose forward equals ``m``'s on batch-first inputs, in the
            same training or evaluation mode as ``m``.
        """
        if not isinstance(m, nn.MultiheadAttention):
            raise TypeError(f"expected torch.nn.MultiheadAttention, got {type(m).__name__}")
        if not m._qkv_same_embed_dim:
            raise ValueError("from_torch needs kdim == vdim == embed_dim (a packed in_proj_weight)")
        if m.bias_k is not None or m.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn have no counterpart in this module")
        bias = m.in_proj_bias is not None
        new = cls(m.embed_dim, m.num_heads, bias=bias, dropout=m.dropout)
        new = new.to(device=m.in_proj_weight.device, dtype=m.in_proj_weight.dtype)
        with torch.no_grad():
            for i, lin in enumerate((new.w_q, new.w_k, new.w_v)):
                lin.weight.copy_(m.in_proj_weight.chunk(3)[i])  # (3D, D) -> (D, D)
                if bias:
                    lin.bias.copy_(m.in_proj_bias.chunk(3)[i])  # (3D,) -> (D,)
            new.w_o.weight.copy_(m.out_proj.weight)
            if bias:
                new.w_o.bias.copy_(m.out_proj.bias)
        return new.train(m.training)  # an eval() module with dropout must not become one that drops


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """PyTorch's fused kernel, with a query that may attend to nothing given zeros.

    For such a query what the kernel returns depends on the PyTorch version and backend (NaN on
    some, zeros on others): let it attend everywhere, then zero it, as the explicit path does.
    """
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v)  # (B, H, T, d_k)
    empty = ~mask.any(dim=-1, keepdim=True)  # (..., T, 1)
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty)  # (B, H, T, d_k)
    return heads.masked_fill(empty, 0.0) if empty.any() else heads
