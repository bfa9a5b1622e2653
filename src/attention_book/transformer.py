"""The Transformer encoder-decoder (Vaswani et al., 2017, section 3), batch-first.

Each sub-layer sits in a residual block with a norm: post-LN (the paper, default)
``norm(x + dropout(f(x)))`` or pre-LN ``x + dropout(f(norm(x)))`` with a final norm. The
encoder layer is also the block of GPT, BERT and LLaMA: the same block, different parts.
Attention weights and the feed-forward hidden layer are dropped too, as in PyTorch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attention_book import attention, dates, positional, validation
from attention_book.layers import (
    ACTIVATIONS,
    FeedForward,  # noqa: F401 (chapters call transformer.FeedForward)
    feed_forward,
    norm_layer,
    xavier_init,
)
from attention_book.multihead import KVCacheLike, MultiHeadAttention


class EncoderLayer(nn.Module):
    """Self-attention and a feed-forward network, each in a residual block with a norm (3.1).

    Args:
        activation: ``"relu"``, ``"gelu"`` or ``"swiglu"``.
        norm_first: False for post-LN (the paper), True for pre-LN.
        num_kv_heads, bias, layer_idx: as in :class:`MultiHeadAttention`.
        norm, eps: ``"layer"`` or ``"rms"``, and its epsilon.
        cross_attention: add :class:`DecoderLayer`'s cross-attention, third norm and dropout."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        *,
        num_kv_heads: int | None = None,
        bias: bool = True,
        norm: str = "layer",
        eps: float = 1e-5,
        layer_idx: int = 0,
        cross_attention: bool = False,
    ) -> None:
        super().__init__()
        dropout = validation.check_probability("dropout", dropout)
        self.norm_first = validation.check_bool("norm_first", norm_first)
        self.self_attn = MultiHeadAttention(
            d_model, num_heads, bias, dropout, num_kv_heads=num_kv_heads, layer_idx=layer_idx
        )
        if cross_attention:  # a decoder layer's, built second as the paper lists it
            self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ff = feed_forward(d_model, d_ff, dropout, activation)
        self.norm1 = norm_layer(norm, d_model, eps)
        self.norm2 = norm_layer(norm, d_model, eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        if cross_attention:
            self.norm3 = norm_layer(norm, d_model, eps)
            self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        cache: KVCacheLike | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``x (B, T, D)`` -> ``(output (B, T, D), weights (B, H, T, S) or None)``.

        ``mask``, ``cache``, ``rope``, ``need_weights``: as in ``MultiHeadAttention.forward``."""
        if self.norm_first:  # pre-LN: x + sublayer(norm(x))
            h = self.norm1(x)
            a, weights = self.self_attn(h, h, h, mask, need_weights, cache, rope)
            x = x + self.dropout1(a)  # (B, T, D)
            x = x + self.dropout2(self.ff(self.norm2(x)))  # (B, T, D)
        else:  # post-LN, the paper: norm(x + sublayer(x))
            a, weights = self.self_attn(x, x, x, mask, need_weights, cache, rope)
            x = self.norm1(x + self.dropout1(a))  # (B, T, D)
            x = self.norm2(x + self.dropout2(self.ff(x)))  # (B, T, D)
        return x, weights


class DecoderLayer(EncoderLayer):
    """Causal self-attention, cross-attention to the encoder's output and a feed-forward network,
    each in a residual block with LayerNorm: one layer of the paper's decoder."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
    ) -> None:
        super().__init__(
            d_model, num_heads, d_ff, dropout, activation, norm_first, cross_attention=True
        )

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Decode ``x (B, T, D)`` reading ``memory (B, S, D)``.

        Returns:
            ``(output (B, T, D), self_weights (B, H, T, T), cross_weights (B, H, T, S))``; the
            weights are None unless ``need_weights``."""
        m = memory
        if self.norm_first:  # pre-LN: x + sublayer(norm(x))
            h = self.norm1(x)
            a, self_w = self.self_attn(h, h, h, tgt_mask, need_weights)
            x = x + self.dropout1(a)  # (B, T, D)
            c, cross_w = self.cross_attn(self.norm2(x), m, m, memory_mask, need_weights)
            x = x + self.dropout2(c)  # (B, T, D)
            x = x + self.dropout3(self.ff(self.norm3(x)))  # (B, T, D)
        else:  # post-LN, the paper: norm(x + sublayer(x))
            a, self_w = self.self_attn(x, x, x, tgt_mask, need_weights)
            x = self.norm1(x + self.dropout1(a))  # (B, T, D)
            # Queries from the decoder, keys and values from the encoder: weights are (T, S).
            c, cross_w = self.cross_attn(x, m, m, memory_mask, need_weights)
            x = self.norm2(x + self.dropout2(c))  # (B, T, D)
            x = self.norm3(x + self.dropout3(self.ff(x)))  # (B, T, D)
        return x, self_w, cross_w


class Stack(nn.Module):
    """N encoder layers, or decoder layers if ``cross_attention``; pre-LN adds a final norm."""

    def __init__(
        self, num_layers: int, *args: object, cross_attention: bool = False, **kwargs: object
    ) -> None:
        super().__init__()
        validation.check_positive_int("num_layers", num_layers)
        decoder = validation.check_bool("cross_attention", cross_attention)
        layer = DecoderLayer if decoder else EncoderLayer
        self.layers = nn.ModuleList(layer(*args, **kwargs) for _ in range(num_layers))
        first = self.layers[0]
        self.norm = nn.LayerNorm(first.ff.d_model) if first.norm_first else None

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """``(B, T, D) -> (B, T, D)``; a decoder also reads ``memory (B, S, D)``."""
        for layer in self.layers:
            if isinstance(layer, DecoderLayer):
                x = layer(x, memory, mask, memory_mask)[0]  # (B, T, D)
            else:
                x = layer(x, mask)[0]  # (B, T, D)
        return x if self.norm is None else self.norm(x)


@dataclass(frozen=True)
class TransformerConfig:
    """Hyperparameters of :class:`Transformer`. The paper's base model: ``d_model=512,
    num_heads=8``, 6 + 6 layers, ``d_ff=2048, dropout=0.1``."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    activation: str = "relu"
    norm_first: bool = False
    max_len: int = 128
    pad_id: int = 0

    def __post_init__(self) -> None:
        sizes = ("src_vocab_size", "tgt_vocab_size", "d_model", "num_heads", "d_ff", "max_len")
        for name in (*sizes, "num_encoder_layers", "num_decoder_layers"):
            validation.check_positive_int(name, getattr(self, name))
        validation.check_heads(self.d_model, self.num_heads)
        validation.check_even("d_model", self.d_model, "for the sinusoidal encoding")
        validation.check_probability("dropout", self.dropout)
        validation.check_choice("activation", self.activation, ACTIVATIONS)
        validation.check_bool("norm_first", self.norm_first)
        pad_id = validation.check_int("pad_id", self.pad_id)
        if not 0 <= pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(
                f"pad_id={self.pad_id} must be a valid id in both vocabularies "
                f"(src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size})"
            )


def dates_config(recipe: dates.Recipe = dates.RECIPE) -> TransformerConfig:
    """The encoder-decoder of chapter 11 for the dates task, with the sizes ``recipe`` trains."""
    if not isinstance(recipe, dates.Recipe):
        raise TypeError(f"recipe must be a dates.Recipe, got {type(recipe).__name__}")
    return TransformerConfig(
        src_vocab_size=len(dates.SOURCE_VOCAB),
        tgt_vocab_size=len(dates.TARGET_VOCAB),
        d_model=recipe.d_model,
        num_heads=recipe.num_heads,
        num_encoder_layers=recipe.num_encoder_layers,
        num_decoder_layers=recipe.num_decoder_layers,
        d_ff=recipe.d_ff,
        dropout=recipe.dropout,
        max_len=max(dates.MAX_SOURCE_LEN, dates.TARGET_LEN),
        pad_id=dates.PAD_ID,
    )


class Transformer(nn.Module):
    """The encoder-decoder of Vaswani et al. (2017), figure 1."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"expected a TransformerConfig, got {type(config).__name__}")
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.register_buffer("pe", positional.sinusoidal_encoding(c.max_len, c.d_model))
        self.embed_dropout = nn.Dropout(c.dropout)
        layer_args = (c.d_model, c.num_heads, c.d_ff, c.dropout, c.activation, c.norm_first)
        self.encoder = Stack(c.num_encoder_layers, *layer_args)
        self.decoder = Stack(c.num_decoder_layers, *layer_args, cross_attention=True)
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size)
        self.scale = math.sqrt(c.d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        xavier_init(self)
        with torch.no_grad():
            self.src_embed.weight[self.config.pad_id].zero_()
            self.tgt_embed.weight[self.config.pad_id].zero_()

    def _embed(self, ids: Tensor, table: nn.Embedding) -> Tensor:
        x = table(ids) * self.scale + self.pe[: ids.shape[1]]  # (B, L) -> (B, L, D)
        return self.embed_dropout(x)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """``src (B, S)`` -> ``(memory (B, S, D), src_mask (B, 1, 1, S))``, True at tokens."""
        c = self.config
        validation.check_ids("src", src, vocab_size=c.src_vocab_size, max_len=c.max_len)
        src_mask = (src != self.config.pad_id)[:, None, None, :]  # (B, S) -> (B, 1, 1, S)
        memory = self.encoder(self._embed(src, self.src_embed), src_mask)  # (B, S, D)
        return memory, src_mask

    def target_mask(self, tgt: Tensor) -> Tensor:
        """Bool ``(B, 1, T, T)``: True where ``j <= t`` and ``tgt[:, j]`` is not padding."""
        c = self.config
        validation.check_ids("tgt", tgt, vocab_size=c.tgt_vocab_size, max_len=c.max_len)
        # Built on demand: a (T, T) mask for the T at hand, never one of (max_len, max_len).
        causal = attention.causal_mask(tgt.shape[1], device=tgt.device)  # (T, T)
        not_pad = tgt != self.config.pad_id  # (B, T)
        return causal & not_pad[:, None, None, :]  # (T, T) & (B, 1, 1, T) -> (B, 1, T, T)

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """Logits ``(B, T, V)`` for ``tgt (B, T)`` (BOS first) given :meth:`encode`'s outputs."""
        tgt_mask = self.target_mask(tgt)  # (B, 1, T, T); checks tgt
        validation.check_memory(memory, src_mask, tgt.shape[0], self.config.d_model)
        x = self._embed(tgt, self.tgt_embed)  # (B, T) -> (B, T, D)
        x = self.decoder(x, tgt_mask, memory, src_mask)  # (B, T, D)
        return self.generator(x)  # (B, T, D) -> (B, T, V)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Teacher-forced logits ``(B, T, V)`` from ``src (B, S)`` and ``tgt (B, T)``."""
        memory, src_mask = self.encode(src)  # (B, S, D), (B, 1, 1, S)
        return self.decode(tgt, memory, src_mask)  # (B, T, V)

    @torch.no_grad()
    def cross_attention_weights(self, src: Tensor, tgt: Tensor) -> list[Tensor]:
        """One ``(B, H, T, S)`` cross-attention tensor per decoder layer."""
        memory, src_mask = self.encode(src)  # (B, S, D), (B, 1, 1, S)
        x, tgt_mask = self._embed(tgt, self.tgt_embed), self.target_mask(tgt)  # (B, T, D)
        weights = []
        for layer in self.decoder.layers:
            x, _, cross = layer(x, memory, tgt_mask, src_mask, True)  # (B, T, D), (B, H, T, S)
            weights.append(cross)  # (B, H, T, S)
        return weights


def count_parameters(module: nn.Module) -> int:
    """The number of trainable scalars in ``module`` (a tied matrix counts once)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
