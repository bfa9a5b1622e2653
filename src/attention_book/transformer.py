"""The Transformer encoder-decoder (Vaswani et al., 2017, section 3), batch-first.

Each encoder layer is self-attention then a position-wise feed-forward network; each decoder
layer is causal self-attention, cross-attention to the encoder's output, then the feed-forward
network. Every sub-layer sits inside a residual connection with layer normalisation:

* post-LN (the paper, the default): ``x = norm(x + dropout(sublayer(x)))``;
* pre-LN (``norm_first=True``, most modern models): ``x = x + dropout(sublayer(norm(x)))``,
  with one more LayerNorm at the end of the stack.

The encoder layer is also the block of GPT (pre-LN, causal mask, a key-value cache), of BERT
(post-LN, GELU) and of LLaMA (pre-norm with RMSNorm, rotary positions, grouped-query attention,
SwiGLU, no biases): the same block, different parts.

Dropout: the paper (section 5.4) drops each sub-layer's output before the residual add and the
sums of embeddings and positional encodings. Like PyTorch's ``nn.Transformer*`` layers, this
package also drops the attention weights and the feed-forward hidden activation, with the same
probability. The paper's text does not mention these two, but the authors' tensor2tensor code
and the Annotated Transformer apply them too.

Masks follow :mod:`attention_book.attention`: bool, True means "may attend".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attention_book import attention, positional, validation
from attention_book.layers import ACTIVATIONS, FeedForward, feed_forward, norm_layer
from attention_book.multihead import KVCacheLike, MultiHeadAttention

__all__ = ["FeedForward", "EncoderLayer", "DecoderLayer", "Stack", "Transformer"]


class EncoderLayer(nn.Module):
    """Self-attention and a feed-forward network, each in a residual block with a norm.

    One layer of the paper's encoder (section 3.1): ``LN(x + dropout(SelfAttn(x)))``, then
    ``LN(z + dropout(FFN(z)))`` in the default post-LN wiring.

    Args:
        d_model: D.
        num_heads: H; must divide ``d_model``.
        d_ff: hidden width of the feed-forward network.
        dropout: one probability for each sub-layer's output before the residual add (the
            paper's residual dropout, section 5.4) and, as in PyTorch and the authors' code but
            not in the paper's text, for the attention weights and the feed-forward hidden layer.
        activation: ``"relu"``, ``"gelu"`` or ``"swiglu"`` (LLaMA's gated network).
        norm_first: a bool; False for post-LN (the paper), True for pre-LN.
        num_kv_heads, bias, layer_idx: as in :class:`MultiHeadAttention`.
        norm: ``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm).
        eps: the norms' epsilon.
    """

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
    ) -> None:
        super().__init__()
        dropout = validation.check_probability("dropout", dropout)
        self.norm_first = validation.check_bool("norm_first", norm_first)
        self.self_attn = MultiHeadAttention(
            d_model, num_heads, bias, dropout, num_kv_heads=num_kv_heads, layer_idx=layer_idx
        )
        self.ff = feed_forward(d_model, d_ff, dropout, activation)
        self.norm1 = norm_layer(norm, d_model, eps)
        self.norm2 = norm_layer(norm, d_model, eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        cache: KVCacheLike | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Encode ``x``.

        Args:
            x: ``(B, T, D)``.
            mask: as in :class:`MultiHeadAttention`: ``(T, S)``, or four dimensions
                broadcastable to ``(B, H, T, S)`` (source padding: ``(B, 1, 1, S)``);
                True = may attend. S = T without a cache.
            cache, rope: as in :meth:`MultiHeadAttention.forward` (a decoder-only model
                generating: ``x`` then holds only the new positions).
            need_weights: also return the attention weights, computed explicitly (otherwise
                the fused kernel runs, which is faster).

        Returns:
            ``(output, weights)``: output ``(B, T, D)``; weights ``(B, H, T, S)`` (after
            dropout in training mode: call ``eval()`` for the softmax) or None.
        """
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


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder output, and a feed-forward network.

    One layer of the paper's decoder (section 3.1), three sub-layers each inside a residual
    block with LayerNorm; the causal mask (passed as ``tgt_mask``) keeps position t from
    attending to later positions.

    Args:
        d_model, num_heads, d_ff, activation, norm_first: as in :class:`EncoderLayer`.
        dropout: as in :class:`EncoderLayer`, here on both attention weight matrices too.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        dropout = validation.check_probability("dropout", dropout)
        self.norm_first = validation.check_bool("norm_first", norm_first)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Decode ``x`` while reading ``memory``.

        Args:
            x: the target-side states, ``(B, T, D)``.
            memory: the encoder's output, ``(B, S, D)``.
            tgt_mask: bool, True = may attend: a causal ``(T, T)`` mask, or four dimensions
                broadcastable to ``(B, H, T, T)`` (causal combined with target padding).
            memory_mask: bool, ``(T, S)`` or four dimensions broadcastable to
                ``(B, H, T, S)``; usually the source padding mask ``(B, 1, 1, S)``.
            need_weights: also return both attention weights, computed explicitly.

        Returns:
            ``(output, self_weights, cross_weights)``: output ``(B, T, D)``, self_weights
            ``(B, H, T, T)`` and cross_weights ``(B, H, T, S)``, or None and None.
        """
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
    """``num_layers`` encoder layers, or decoder layers (N = 6 in the paper), then a LayerNorm
    in pre-LN: there the residual stream is never normalised inside the layers, so it is
    normalised once at the end.

    Args:
        num_layers: N.
        d_model, num_heads, d_ff, dropout, activation, norm_first: as in :class:`EncoderLayer`.
        cross_attention: stack :class:`DecoderLayer` (which read an encoder's memory) instead of
            :class:`EncoderLayer`.
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        *,
        cross_attention: bool = False,
    ) -> None:
        super().__init__()
        validation.check_positive_int("num_layers", num_layers)
        layer = (
            DecoderLayer
            if validation.check_bool("cross_attention", cross_attention)
            else EncoderLayer
        )
        args = (d_model, num_heads, d_ff, dropout, activation, norm_first)
        self.layers = nn.ModuleList(layer(*args) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else None

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """Run ``x`` ``(B, T, D)`` through every layer; return ``(B, T, D)``.

        Args:
            x: ``(B, T, D)``.
            mask: the self-attention mask of every layer (see :class:`EncoderLayer`).
            memory: ``(B, S, D)``, the encoder output every decoder layer reads.
            memory_mask: the cross-attention mask (see :class:`DecoderLayer`).
        """
        for layer in self.layers:
            if isinstance(layer, DecoderLayer):
                x = layer(x, memory, mask, memory_mask)[0]  # (B, T, D)
            else:
                x = layer(x, mask)[0]  # (B, T, D)
        return x if self.norm is None else self.norm(x)


@dataclass(frozen=True)
class TransformerConfig:
    """Hyperparameters of :class:`Transformer` (defaults: a small model that trains on a CPU).

    The paper's base model is ``d_model=512, num_heads=8, num_encoder_layers=6,
    num_decoder_layers=6, d_ff=2048, dropout=0.1``.
    """

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


class Transformer(nn.Module):
    """The encoder-decoder Transformer of Vaswani et al. (2017), figure 1.

    Token ids are embedded (scaled by sqrt(d_model)), the sinusoidal positional encoding is
    added, the encoder reads the source, the decoder reads the shifted target and the encoder's
    output, and ``generator`` maps each decoder state to logits over the target vocabulary
    (the softmax is left to the loss or to decoding).

    Args:
        config: a :class:`TransformerConfig`.
    """

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
        # Xavier-uniform on every matrix, as torch.nn.Transformer and the Annotated Transformer.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        with torch.no_grad():
            self.src_embed.weight[self.config.pad_id].zero_()
            self.tgt_embed.weight[self.config.pad_id].zero_()

    def _check_ids(self, name: str, ids: object, vocab_size: int) -> Tensor:
        return validation.check_ids(name, ids, vocab_size=vocab_size, max_len=self.config.max_len)

    def _embed(self, ids: Tensor, table: nn.Embedding) -> Tensor:
        x = table(ids) * self.scale + self.pe[: ids.shape[1]]  # (B, L) -> (B, L, D)
        return self.embed_dropout(x)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Encode source ids.

        Args:
            src: ``(B, S)`` token ids, padded with ``pad_id``.

        Returns:
            ``(memory, src_mask)``: memory ``(B, S, D)``; src_mask bool ``(B, 1, 1, S)``, True
            where ``src != pad_id`` (the keys a query may attend to).
        """
        self._check_ids("src", src, self.config.src_vocab_size)
        src_mask = (src != self.config.pad_id)[:, None, None, :]  # (B, S) -> (B, 1, 1, S)
        memory = self.encoder(self._embed(src, self.src_embed), src_mask)  # (B, S, D)
        return memory, src_mask

    def target_mask(self, tgt: Tensor) -> Tensor:
        """The decoder's self-attention mask: causal, and no attention to padded targets.

        Args:
            tgt: ``(B, T)`` decoder input ids.

        Returns:
            bool ``(B, 1, T, T)``, True = may attend: key j is allowed to query t when
            ``j <= t`` and ``tgt[:, j]`` is not padding.

        Raises:
            ValueError: if ``tgt`` is not ``(B, T)`` ids with ``1 <= T <= max_len``.
        """
        self._check_ids("tgt", tgt, self.config.tgt_vocab_size)
        # Built on demand: a (T, T) mask for the T at hand, never one of (max_len, max_len).
        causal = attention.causal_mask(tgt.shape[1], device=tgt.device)  # (T, T)
        not_pad = tgt != self.config.pad_id  # (B, T)
        return causal & not_pad[:, None, None, :]  # (T, T) & (B, 1, 1, T) -> (B, 1, T, T)

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """Predict the next token at every target position.

        Args:
            tgt: ``(B, T)`` decoder input ids (the target shifted right, starting with BOS).
            memory: ``(B, S, D)`` from :meth:`encode`.
            src_mask: bool ``(B, 1, 1, S)`` from :meth:`encode`.

        Returns:
            logits ``(B, T, tgt_vocab_size)``; position t depends only on ``tgt[:, : t + 1]``.

        Raises:
            ValueError: if ``memory`` is not ``(B, S, d_model)`` with the ``B`` of ``tgt``, or
                ``src_mask`` is not ``(B, 1, 1, S)``.
        """
        tgt_mask = self.target_mask(tgt)  # (B, 1, T, T); checks tgt
        D = self.config.d_model
        validation.check_states("memory", memory, D)
        if memory.dim() != 3 or memory.shape[0] != tgt.shape[0] or memory.shape[2] != D:
            raise ValueError(
                f"memory must be (B, S, d_model={D}) with the same B as tgt {tuple(tgt.shape)}, "
                f"got {tuple(memory.shape)}"
            )
        B, S = memory.shape[0], memory.shape[1]
        if not isinstance(src_mask, Tensor) or tuple(src_mask.shape) != (B, 1, 1, S):
            got = tuple(src_mask.shape) if isinstance(src_mask, Tensor) else type(src_mask).__name__
            raise ValueError(
                f"src_mask must be (B, 1, 1, S) = {(B, 1, 1, S)} for memory "
                f"{tuple(memory.shape)}, got {got}"
            )
        x = self._embed(tgt, self.tgt_embed)  # (B, T) -> (B, T, D)
        x = self.decoder(x, tgt_mask, memory, src_mask)  # (B, T, D)
        return self.generator(x)  # (B, T, D) -> (B, T, V)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Logits for teacher-forced training.

        Args:
            src: ``(B, S)`` source ids.
            tgt: ``(B, T)`` decoder input ids; the caller shifts the target right (BOS first).

        Returns:
            ``(B, T, tgt_vocab_size)`` logits.
        """
        memory, src_mask = self.encode(src)  # (B, S, D), (B, 1, 1, S)
        return self.decode(tgt, memory, src_mask)  # (B, T, V)

    @torch.no_grad()
    def cross_attention_weights(self, src: Tensor, tgt: Tensor) -> list[Tensor]:
        """The cross-attention weights of every decoder layer, for plotting.

        Args:
            src: ``(B, S)`` source ids.
            tgt: ``(B, T)`` decoder input ids.

        Returns:
            One ``(B, H, T, S)`` tensor per decoder layer; row t says where position t reads
            in the source.
        """
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
