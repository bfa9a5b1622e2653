"""The Transformer encoder-decoder (Vaswani et al., 2017, section 3), batch-first.

Each encoder layer is self-attention then a position-wise feed-forward network; each decoder
layer is causal self-attention, cross-attention to the encoder's output, then the feed-forward
network. Every sub-layer sits inside a residual connection with layer normalisation:

* post-LN (the paper, the default): ``x = norm(x + dropout(sublayer(x)))``;
* pre-LN (``norm_first=True``, most modern models): ``x = x + dropout(sublayer(norm(x)))``,
  with one more LayerNorm at the end of the stack.

Dropout: the paper (section 5.4) drops each sub-layer's output before the residual add and the
sums of embeddings and positional encodings. Like PyTorch's ``nn.Transformer*`` layers, this
package also drops the attention weights and the feed-forward hidden activation, with the same
probability. The paper's text does not mention these two, but the authors' tensor2tensor code
and the Annotated Transformer apply them too.

Masks follow :mod:`attention_book.attention`: bool, True means "may attend".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import attention, positional, validation
from attention_book.multihead import KVCacheLike, MultiHeadAttention

ACTIVATIONS = ("relu", "gelu")


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _check_norm_first(norm_first: object) -> None:
    # A truthy non-bool (1, "no", a tensor) would silently pick a wiring; demand a real bool.
    if not isinstance(norm_first, bool):
        raise TypeError(f"norm_first must be a bool, got {norm_first!r}")


def _check_width(d_model: int, num_heads: int) -> None:
    """A model width that splits into whole heads and pairs of sinusoid channels."""
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
    if d_model % 2:
        raise ValueError(f"d_model must be even for the sinusoidal encoding, got {d_model}")


def _check_dropout(p: object) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1), got {p!r}")


def _check_states(name: str, x: object, d_model: int, dtype: torch.dtype, dims: str) -> None:
    """Raise unless ``x`` is a float tensor whose shape reads as ``dims`` ending in d_model."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    rank_ok = x.dim() == 3 if dims.startswith("(B,") else x.dim() >= 1
    if not rank_ok or x.shape[-1] != d_model:
        raise ValueError(f"{name} must be {dims}, D = d_model = {d_model}; got {tuple(x.shape)}")
    if x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but the module's parameters are {dtype}")


def residual(
    x: Tensor,
    sublayer: Callable[[Tensor], tuple[Tensor, Tensor | None]],
    norm: nn.LayerNorm,
    dropout: nn.Dropout,
    norm_first: bool,
) -> tuple[Tensor, Tensor | None]:
    """One sub-layer inside its residual connection, in either wiring.

    post-LN (the paper): ``norm(x + dropout(sublayer(x)))``;
    pre-LN: ``x + dropout(sublayer(norm(x)))``.

    Args:
        x: ``(B, T, D)``.
        sublayer: maps ``(B, T, D)`` to ``((B, T, D), extra)``; extra (attention weights, or
            None) is handed back untouched.
        norm, dropout: the block's LayerNorm and residual dropout.
        norm_first: the wiring.

    Returns:
        ``(x, extra)``: the new residual stream ``(B, T, D)`` and the sub-layer's extra.
    """
    out, extra = sublayer(norm(x) if norm_first else x)  # (B, T, D)
    x = x + dropout(out)  # (B, T, D)
    return (x if norm_first else norm(x)), extra


class FeedForward(nn.Module):
    """The position-wise feed-forward network FFN(x) = w_2(act(w_1 x)) (section 3.3).

    "Position-wise": the same two linear maps act on every token separately, so the output at a
    position depends only on the input at that position.

    Args:
        d_model: D, the width of inputs and outputs.
        d_ff: the hidden width (2048 = 4 x 512 in the paper).
        dropout: dropout on the hidden activations (training only), as in PyTorch and the
            authors' tensor2tensor code; the paper's text does not mention it.
        activation: ``"relu"`` (the paper) or ``"gelu"``.
    """

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.d_model = validation.check_positive_int("d_model", d_model)
        validation.check_positive_int("d_ff", d_ff)
        _check_dropout(dropout)
        _check_activation(activation)
        self.activation = activation
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self._act = F.relu if activation == "relu" else F.gelu

    def forward(self, x: Tensor) -> Tensor:
        """Apply the network to every position of ``x``.

        Args:
            x: ``(..., D)``, of the parameters' dtype.

        Returns:
            ``(..., D)``.
        """
        _check_states("x", x, self.d_model, self.w_1.weight.dtype, "(..., D)")
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        hidden = self._act(self.w_1(x))  # (..., D) -> (..., d_ff)
        return self.w_2(self.dropout(hidden))  # (..., d_ff) -> (..., D)


class EncoderLayer(nn.Module):
    """Self-attention and a feed-forward network, each in a residual block with LayerNorm.

    One layer of the paper's encoder (section 3.1): ``LN(x + dropout(SelfAttn(x)))``, then
    ``LN(z + dropout(FFN(z)))`` in the default post-LN wiring (see :func:`residual`).

    Args:
        d_model: D.
        num_heads: H; must divide ``d_model``.
        d_ff: hidden width of the feed-forward network.
        dropout: one probability for each sub-layer's output before the residual add (the
            paper's residual dropout, section 5.4) and, as in PyTorch and the authors' code but
            not in the paper's text, for the attention weights and the feed-forward hidden layer.
        activation: ``"relu"`` or ``"gelu"``.
        norm_first: a bool; False for post-LN (the paper), True for pre-LN.

    Raises:
        TypeError: if ``norm_first`` is not a bool.
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
        _check_dropout(dropout)
        _check_norm_first(norm_first)
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        cache: KVCacheLike | None = None,
        layer: int = 0,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Encode ``x``.

        Args:
            x: ``(B, T, D)``.
            mask: as in :class:`MultiHeadAttention`: ``(T, S)``, or four dimensions
                broadcastable to ``(B, H, T, S)`` (source padding: ``(B, 1, 1, S)``);
                True = may attend. S = T without a cache.
            cache: a key-value cache (see :class:`MultiHeadAttention`), used as a decoder-only
                model generates: ``x`` then holds only the new positions, and self-attention
                also reads the S - T cached ones.
            layer: this layer's index in the cache.
            need_weights: also return the attention weights, computed explicitly (the default
                uses the fused kernel, which is faster).

        Returns:
            ``(B, T, D)``; with ``need_weights``, ``(output, weights)`` with weights
            ``(B, H, T, S)`` (after dropout in training mode: call ``eval()`` for the softmax).
        """
        _check_states("x", x, self.ff.d_model, self.norm1.weight.dtype, "(B, T, D)")

        def self_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:
            return self.self_attn(h, h, h, mask, need_weights, cache, layer)

        def feed_forward(h: Tensor) -> tuple[Tensor, None]:
            return self.ff._forward(h), None

        x, weights = residual(x, self_attention, self.norm1, self.dropout1, self.norm_first)
        x, _ = residual(x, feed_forward, self.norm2, self.dropout2, self.norm_first)
        return (x, weights) if need_weights else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Build an equivalent layer from a ``torch.nn.TransformerEncoderLayer``.

        The weights do not depend on PyTorch's ``batch_first``; the copy always takes batch-first
        input, so for a sequence-first PyTorch layer transpose the input and output.
        ``norm_first``, the LayerNorm ``eps`` and the dropout probability are copied.

        Args:
            layer: a PyTorch encoder layer with ReLU or exact GELU and ``bias=True``.

        Returns:
            An ``EncoderLayer`` whose forward equals ``layer``'s, in the same training mode as
            ``layer``; pass ``~key_padding_mask`` reshaped to ``(B, 1, 1, S)`` where PyTorch
            takes ``src_key_padding_mask``.
        """
        _check_torch_layer(layer, nn.TransformerEncoderLayer)
        return _layer_from_torch(cls, layer, {"self_attn": layer.self_attn})


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder output, and a feed-forward network.

    One layer of the paper's decoder (section 3.1), three sub-layers each inside a residual
    block with LayerNorm (see :func:`residual`); the causal mask (passed as ``tgt_mask``) keeps
    position t from attending to later positions.

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
        _check_dropout(dropout)
        _check_norm_first(norm_first)
        self.norm_first = norm_first
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
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
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
            ``(B, T, D)``; with ``need_weights``, ``(output, self_weights, cross_weights)``
            with self_weights ``(B, H, T, T)`` and cross_weights ``(B, H, T, S)``.
        """
        D, dtype = self.ff.d_model, self.norm1.weight.dtype
        _check_states("x", x, D, dtype, "(B, T, D)")
        _check_states("memory", memory, D, dtype, "(B, S, D)")

        def self_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:
            return self.self_attn(h, h, h, tgt_mask, need_weights)

        def cross_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:
            # Queries from the decoder, keys and values from the encoder: weights are (T, S).
            return self.cross_attn(h, memory, memory, memory_mask, need_weights)

        def feed_forward(h: Tensor) -> tuple[Tensor, None]:
            return self.ff._forward(h), None

        x, self_w = residual(x, self_attention, self.norm1, self.dropout1, self.norm_first)
        x, cross_w = residual(x, cross_attention, self.norm2, self.dropout2, self.norm_first)
        x, _ = residual(x, feed_forward, self.norm3, self.dropout3, self.norm_first)
        return (x, self_w, cross_w) if need_weights else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """Build an equivalent layer from a ``torch.nn.TransformerDecoderLayer``.

        As for :meth:`EncoderLayer.from_torch`: the copy takes batch-first input, and
        ``norm_first``, ``eps`` and dropout are copied. The boolean masks of
        ``nn.MultiheadAttention`` and the ``nn.Transformer*`` layers mean the opposite of ours
        (True = blocked): where ours is ``m``, pass ``~m`` to them.

        Args:
            layer: a PyTorch decoder layer with ReLU or exact GELU and ``bias=True``.

        Returns:
            A ``DecoderLayer`` whose forward equals ``layer``'s, in the same training mode.
        """
        _check_torch_layer(layer, nn.TransformerDecoderLayer)
        attns = {"self_attn": layer.self_attn, "cross_attn": layer.multihead_attn}
        return _layer_from_torch(cls, layer, attns)


def _torch_activation(layer: nn.Module) -> str:
    """Name a PyTorch Transformer layer's activation; raise unless it is ReLU or exact GELU."""
    act = layer.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    raise ValueError(f"from_torch supports ReLU and exact GELU activations, got {act!r}")


def _check_torch_layer(layer: nn.Module, expected: type) -> None:
    if not isinstance(layer, expected):
        raise TypeError(f"expected torch.nn.{expected.__name__}, got {type(layer).__name__}")
    if layer.linear1.bias is None or layer.norm1.bias is None:
        raise ValueError("from_torch needs a layer built with bias=True")


def _layer_from_torch(cls: type, layer: nn.Module, attns: dict[str, nn.Module]) -> nn.Module:
    """The copy of a checked PyTorch encoder or decoder layer: attentions, FFN, norms, mode."""
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
        setattr(new, name, MultiHeadAttention.from_torch(theirs))
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


class _Stack(nn.Module):
    """``num_layers`` copies of ``layer_class`` (N = 6 in the paper).

    With ``norm_first=True`` a final LayerNorm follows the stack: in pre-LN the residual stream
    is never normalised inside the layers, so it is normalised once at the end.
    """

    layer_class: type[nn.Module]

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        validation.check_positive_int("num_layers", num_layers)
        args = (d_model, num_heads, d_ff, dropout, activation, norm_first)
        self.layers = nn.ModuleList(self.layer_class(*args) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else None


class Encoder(_Stack):
    """A stack of ``num_layers`` :class:`EncoderLayer`, then a LayerNorm in pre-LN.

    Args:
        num_layers: N.
        d_model, num_heads, d_ff, dropout, activation, norm_first: as in :class:`EncoderLayer`.
    """

    layer_class = EncoderLayer

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Run ``x`` ``(B, T, D)`` through every layer with the same ``mask``; return ``(B, T, D)``.

        ``mask`` is as in :meth:`EncoderLayer.forward`.
        """
        for layer in self.layers:
            x = layer(x, mask)  # (B, T, D)
        return x if self.norm is None else self.norm(x)


class Decoder(_Stack):
    """A stack of ``num_layers`` :class:`DecoderLayer`, each reading the same encoder memory.

    Args:
        num_layers: N.
        d_model, num_heads, d_ff, dropout, activation, norm_first: as in :class:`DecoderLayer`.
    """

    layer_class = DecoderLayer

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """Run ``x`` ``(B, T, D)`` through every layer; ``memory`` is ``(B, S, D)``.

        The masks are as in :meth:`DecoderLayer.forward`. Returns ``(B, T, D)``.
        """
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask)  # (B, T, D)
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
        for name in (
            "src_vocab_size",
            "tgt_vocab_size",
            "d_model",
            "num_heads",
            "num_encoder_layers",
            "num_decoder_layers",
            "d_ff",
            "max_len",
        ):
            validation.check_positive_int(name, getattr(self, name))
        _check_width(self.d_model, self.num_heads)
        _check_dropout(self.dropout)
        _check_activation(self.activation)
        _check_norm_first(self.norm_first)
        smallest = min(self.src_vocab_size, self.tgt_vocab_size)
        if isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int):
            raise ValueError(f"pad_id must be an int, got {self.pad_id!r}")
        if not 0 <= self.pad_id < smallest:
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
        self.encoder = Encoder(c.num_encoder_layers, *layer_args)
        self.decoder = Decoder(c.num_decoder_layers, *layer_args)
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

    def _check_ids(self, name: str, ids: Tensor, vocab_size: int) -> None:
        if not isinstance(ids, Tensor) or ids.dtype != torch.long:
            got = ids.dtype if isinstance(ids, Tensor) else type(ids).__name__
            raise TypeError(f"{name} must be a LongTensor of token ids, got {got}")
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"{name} must be (B, length) with length >= 1, got {tuple(ids.shape)}")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"{name} has length {ids.shape[1]} > max_len={self.config.max_len} "
                f"(shape {tuple(ids.shape)})"
            )
        if ids.numel() == 0:  # B = 0: an empty batch, nothing to look up
            return
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{name} holds ids in [{low}, {high}], outside the vocabulary [0, {vocab_size})"
            )

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
        return self._target_mask(tgt)

    def _target_mask(self, tgt: Tensor) -> Tensor:
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
        self._check_ids("tgt", tgt, self.config.tgt_vocab_size)
        D = self.config.d_model
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
        x = self.decoder(x, memory, self._target_mask(tgt), src_mask)  # (B, T, D)
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
        self._check_ids("tgt", tgt, self.config.tgt_vocab_size)
        x, tgt_mask = self._embed(tgt, self.tgt_embed), self._target_mask(tgt)  # (B, T, D)
        weights = []
        for layer in self.decoder.layers:
            x, _, cross = layer(x, memory, tgt_mask, src_mask, need_weights=True)  # (B, T, D)
            weights.append(cross)  # (B, H, T, S)
        return weights


def count_parameters(module: nn.Module) -> int:
    """The number of trainable scalars in ``module``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
