"""Adapters from PyTorch's attention and Transformer layers to the book's, with the same weights.

PyTorch packs W_Q, W_K, W_V into one ``in_proj_weight (3D, D)``, and the bool masks of
``nn.MultiheadAttention`` and ``nn.Transformer*`` mean True = blocked: pass them ``~mask``.
The copies are always batch-first."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attention_book.multihead import MultiHeadAttention
from attention_book.transformer import DecoderLayer, EncoderLayer


def from_torch(module: nn.Module) -> nn.Module:
    """The book's module equal to ``module``, in its training or eval mode.

    ``nn.MultiheadAttention`` (``kdim == vdim == embed_dim``, no ``add_bias_kv`` or
    ``add_zero_attn``) gives :class:`MultiHeadAttention`; ``nn.TransformerEncoderLayer`` and
    ``nn.TransformerDecoderLayer`` (ReLU or exact GELU, with biases) give :class:`EncoderLayer`
    and :class:`DecoderLayer`."""
    if isinstance(module, nn.MultiheadAttention):
        return _attention_from_torch(module)
    if isinstance(module, nn.TransformerEncoderLayer):
        return _layer_from_torch(EncoderLayer, module, {"self_attn": module.self_attn})
    if isinstance(module, nn.TransformerDecoderLayer):
        attns = {"self_attn": module.self_attn, "cross_attn": module.multihead_attn}
        return _layer_from_torch(DecoderLayer, module, attns)
    raise TypeError(
        "expected torch.nn.MultiheadAttention, TransformerEncoderLayer or "
        f"TransformerDecoderLayer, got {type(module).__name__}"
    )


def _attention_from_torch(m: nn.MultiheadAttention) -> MultiHeadAttention:
    if not m._qkv_same_embed_dim:
        raise ValueError("from_torch needs kdim == vdim == embed_dim (a packed in_proj_weight)")
    if m.bias_k is not None or m.add_zero_attn:
        raise ValueError("add_bias_kv and add_zero_attn have no counterpart in this module")
    bias = m.in_proj_bias is not None
    new = MultiHeadAttention(m.embed_dim, m.num_heads, bias=bias, dropout=m.dropout)
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


def _torch_activation(layer: nn.Module) -> str:
    """Name a PyTorch Transformer layer's activation; raise unless it is ReLU or exact GELU."""
    act = layer.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    raise ValueError(f"from_torch supports ReLU and exact GELU activations, got {act!r}")


def _layer_from_torch(cls: type, layer: nn.Module, attns: dict[str, nn.Module]) -> nn.Module:
    """The copy of a PyTorch encoder or decoder layer: attentions, FFN, norms, mode."""
    if layer.linear1.bias is None or layer.norm1.bias is None:
        raise ValueError("from_torch needs a layer built with bias=True")
    d_model, d_ff = layer.linear1.in_features, layer.linear1.out_features
    new = cls(
        d_model,
        layer.self_attn.num_heads,
        d_ff,
        dropout=layer.dropout.p,
        activation=_torch_activation(layer),
        norm_first=layer.norm_first,
    )
    for name, theirs in attns.items():
        setattr(new, name, _attention_from_torch(theirs))
    new = new.to(device=layer.linear1.weight.device, dtype=layer.linear1.weight.dtype)
    norms = [name for name in ("norm1", "norm2", "norm3") if hasattr(layer, name)]
    pairs = [(new.ff.w_1, layer.linear1), (new.ff.w_2, layer.linear2)]
    pairs += [(getattr(new, name), getattr(layer, name)) for name in norms]
    with torch.no_grad():
        for ours, theirs in pairs:
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
            if isinstance(ours, nn.LayerNorm):
                ours.eps = theirs.eps
    return new.train(layer.training)
