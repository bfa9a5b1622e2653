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

from attention_book import attention


class KVCacheLike(Protocol):
    """What attention needs of a key-value cache: append one layer's keys and values."""

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]: ...


class MultiHeadAttention(nn.Module):
    """H scaled dot-product attentions in parallel, each of width d_k = d_model / num_heads.

    Args:
        d_model: D, the width of the inputs and of the output.
        num_heads: H; must divide ``d_model``.
        bias: give the four projections ``w_q, w_k, w_v, w_o`` a bias.
        dropout: dropout probability on the attention weights (training only).
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if d_model < 1 or num_heads < 1:
            raise ValueError(f"d_model and num_heads must be positive, got {d_model}, {num_heads}")
        if d_model % num_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by num_heads={num_heads}: "
                f"each head needs d_k = d_model / num_heads to be a whole number"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.num_heads, self.d_k = d_model, num_heads, d_model // num_heads
        self.dropout = dropout
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def _check(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        for name, x in (("query", query), ("key", key), ("value", value)):
            if not isinstance(x, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if not x.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.dim() != 3 or x.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must be (B, len, d_model={self.d_model}) (batch-first); got {shapes}"
                )
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(
                f"query, key and value need the same B, key and value the same S; {shapes}"
            )

    def _split(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.d_k).transpose(1, 2)  # (B, L, D) -> (B, H, L, d_k)

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if query is key and key is value:
            # Self-attention: one matrix product for all three projections (as torch does).
            weight = torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight])  # (3D, D)
            bias = None
            if self.w_q.bias is not None:
                bias = torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias])  # (3D,)
            q, k, v = F.linear(query, weight, bias).chunk(3, dim=-1)  # (B, T, 3D) -> 3 x (B, T, D)
        else:
            q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)  # (B, T|S, D)
        return self._split(q), self._split(k), self._split(v)  # (B, H, T|S, d_k)

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
            query: ``(B, T, D)``.
            key: ``(B, S, D)``.
            value: ``(B, S, D)``.
            mask: bool, broadcastable to ``(B, H, T, S)``; True means "may attend". A padding
                mask over keys is ``(B, 1, 1, S)``; a causal mask is ``(T, T)``.
            need_weights: return the ``(B, H, T, S)`` weights. With False the fused
                ``torch.nn.functional.scaled_dot_product_attention`` is used, which is faster and
                gives the same output when no dropout is applied (eval mode, or ``dropout=0``);
                in training mode with dropout the two paths draw different random masks.
            cache: for self-attention during generation: ``cache.update(layer, k, v)`` receives
                this call's ``(B, H, T, d_k)`` keys and values and returns those of all
                ``S = S_cached + T`` positions, which the queries then attend to; ``mask`` must
                then be broadcastable to ``(B, H, T, S)``.
            layer: this attention's index in the cache.

        Returns:
            ``(output, weights)``: output ``(B, T, D)``; weights ``(B, H, T, S)`` or None.
        """
        self._check(query, key, value)
        B, T, _ = query.shape
        q, k, v = self._project(query, key, value)  # (B, H, T, d_k), (B, H, S, d_k) x 2
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S, d_k) -> (B, H, S_cached + S, d_k)
        attention.check_attention_inputs(q, k, v, mask)
        p = self.dropout if self.training else 0.0
        if need_weights:
            heads, weights = attention.scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, d_k)
            if p > 0.0:
                weights = F.dropout(weights, p)  # (B, H, T, S)
                heads = weights @ v  # (B, H, T, S) @ (B, H, S, d_k) -> (B, H, T, d_k)
        else:
            weights = None
            empty = None
            if mask is not None:
                # For a query that may attend to nothing, what a fused kernel returns depends on
                # the PyTorch version and backend (NaN on some, zeros on others). Let such rows
                # attend everywhere, then zero them, so that the result matches the explicit path
                # whatever the kernel does.
                empty = ~mask.any(dim=-1, keepdim=True)  # (..., T, 1)
                mask = mask | empty
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            if empty is not None and empty.any():
                heads = heads.masked_fill(empty, 0.0)  # (B, H, T, d_k)
        concat = heads.transpose(1, 2).reshape(B, T, self.d_model)  # (B, H, T, d_k) -> (B, T, D)
        return self.w_o(concat), weights  # (B, T, D)

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
