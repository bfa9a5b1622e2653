"""A decoder-only Transformer (GPT): one sequence in, the next token at every position out.

The block is the encoder layer of :mod:`attention_book.transformer` in its pre-LN wiring
(``EncoderLayer(..., norm_first=True)``) run with a causal mask: a decoder layer without its
cross-attention (Radford et al., 2018, 2019). Differences from GPT-2 that keep the book's
model small and comparable with chapter 11's encoder-decoder: the sinusoidal positional
encoding (no learned position table, so ``max_len`` costs no parameters) and, because of it,
embeddings scaled by sqrt(d_model) as in Vaswani et al. (2017), section 3.4.

Weight tying: the token embedding ``E`` (V, D) is also the output layer, ``logits = h E^T``.
One matrix then has two jobs. As the output layer it should start small, entries of standard
deviation ``1 / sqrt(D)``, so that a LayerNorm-ed state ``h`` (norm about ``sqrt(D)``) gives
logits of order 1. As the input table its rows are added to a positional encoding whose entries
are of order 1. Multiplying the looked-up rows by ``sqrt(D)`` reconciles the two.

The model follows the protocol of :mod:`attention_book.generation`, so ``generation.generate``
drives it, with or without a key-value cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attention_book import positional, train, validation
from attention_book.multihead import KVCacheLike
from attention_book.transformer import EncoderLayer, _check_dropout, _check_width


@dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of :class:`GPT`.

    Attributes:
        vocab_size: V.
        d_model: D, even (the sinusoidal encoding pairs dimensions).
        num_heads: H; must divide ``d_model``.
        num_layers: the number of blocks.
        d_ff: hidden width of each block's feed-forward network.
        max_len: the longest sequence the model reads, prompt and generated tokens together.
        dropout: one probability for the embeddings and inside every block.
    """

    vocab_size: int
    d_model: int
    num_heads: int
    num_layers: int
    d_ff: int
    max_len: int
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "num_layers", "d_ff", "max_len"):
            validation.check_positive_int(name, getattr(self, name))
        _check_width(self.d_model, self.num_heads)
        _check_dropout(self.dropout)


class GPT(nn.Module):
    """Token embedding, positional encoding, pre-LN causal blocks, a final LayerNorm, and the
    tied output layer.

    Args:
        config: a :class:`GPTConfig`.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"expected a GPTConfig, got {type(config).__name__}")
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.register_buffer("pe", positional.sinusoidal_encoding(c.max_len, c.d_model))
        self.embed_dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(c.d_model, c.num_heads, c.d_ff, c.dropout, "gelu", norm_first=True)
            for _ in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.d_model)  # pre-LN: the residual stream is normalised at the end
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # weight tying: one (V, D) matrix
        self.scale = math.sqrt(c.d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        # The tied matrix is initialised for its output role: logits of order 1 (module docstring).
        nn.init.normal_(self.embed.weight, std=self.config.d_model**-0.5)

    def _check_ids(self, ids: object, offset: int) -> Tensor:
        if not isinstance(ids, Tensor) or ids.dtype != torch.long:
            got = ids.dtype if isinstance(ids, Tensor) else type(ids).__name__
            raise TypeError(f"ids must be a LongTensor of token ids, got {got}")
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"ids must be (B, T) with T >= 1, got shape {tuple(ids.shape)}")
        if offset + ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"{offset} cached positions plus ids of shape {tuple(ids.shape)} exceed "
                f"max_len={self.config.max_len}"
            )
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(
                f"ids hold values in [{low}, {high}], outside the vocabulary "
                f"[0, {self.config.vocab_size})"
            )
        return ids

    def forward(self, ids: Tensor, cache: KVCacheLike | None = None) -> Tensor:
        """Next-token logits at every position.

        Args:
            ids: ``(B, T)`` token ids. With a cache, the T tokens that follow the
                ``cache.length`` positions read before.
            cache: a :class:`attention_book.generation.KVCache` with ``num_layers`` layers, or
                None to read ``ids`` from position 0.

        Returns:
            ``(B, T, V)`` logits; position t depends only on the tokens up to t.
        """
        logits, _ = self._run(ids, cache, need_weights=False)
        return logits

    def _run(
        self, ids: Tensor, cache: KVCacheLike | None, need_weights: bool
    ) -> tuple[Tensor, list[Tensor]]:
        """:meth:`forward`, and with ``need_weights`` each layer's ``(B, H, T, S)`` weights."""
        if cache is not None and not hasattr(cache, "update"):
            raise TypeError(f"cache must be a KVCache, got {type(cache).__name__}")
        offset = 0 if cache is None else cache.length  # the position of the first new token
        self._check_ids(ids, offset)
        T = ids.shape[1]
        x = self.embed(ids) * self.scale + self.pe[offset : offset + T]  # (B, T) -> (B, T, D)
        x = self.embed_dropout(x)
        # Query t (at position offset + t) may read keys 0 .. offset + t: built on demand.
        mask = torch.ones(T, offset + T, dtype=torch.bool, device=ids.device).tril(offset)  # (T, S)
        weights = []
        for i, layer in enumerate(self.layers):
            if need_weights:
                x, w = layer(x, mask, cache, i, need_weights=True)  # (B, T, D), (B, H, T, S)
                weights.append(w)
            else:
                x = layer(x, mask, cache, i)  # (B, T, D)
        return self.lm_head(self.norm(x)), weights  # (B, T, D) -> (B, T, V)

    @torch.no_grad()
    def attention_weights(self, ids: Tensor, cache: KVCacheLike | None = None) -> list[Tensor]:
        """The self-attention weights of every layer, for plotting.

        The whole forward runs, on the explicit attention path (every product visible).

        Args:
            ids: ``(B, T)`` token ids; cache: as in :meth:`forward`.

        Returns:
            One ``(B, H, T, S)`` tensor per layer (S = T without a cache); row t says where
            position t reads.
        """
        return self._run(ids, cache, need_weights=True)[1]


def lm_loss(model: nn.Module, inputs: Tensor, labels: Tensor, pad_id: int = 0) -> Tensor:
    """The language-modelling loss: cross-entropy of each label given the inputs up to it.

    Args:
        model: maps ``(B, T)`` ids to ``(B, T, V)`` logits.
        inputs: ``(B, T)`` ids, a sequence without its last token.
        labels: ``(B, T)`` the next token at each position; ``pad_id`` where no loss is taken
            (padding, or positions left out of the loss on purpose).
        pad_id: the id that marks positions without loss.

    Returns:
        A scalar: the mean over the positions with a label.
    """
    return train.sequence_loss(model(inputs), labels, pad_id)  # (B, T, V) vs (B, T)


def batch_loss_fn(
    inputs: Tensor, labels: Tensor, batch_size: int, *, pad_id: int = 0, seed: int = 0
) -> Callable[[nn.Module, int], Tensor]:
    """A ``loss_fn(model, step)`` for :func:`attention_book.train.fit` that samples batches.

    Each call draws ``batch_size`` random rows (without replacement) from its own seeded
    generator, drops the columns where every drawn row is padding, and returns :func:`lm_loss`.

    Args:
        inputs: ``(N, T)`` all training inputs, padded on the right with ``pad_id``.
        labels: ``(N, T)`` their labels.
        batch_size: rows per step, at most N.
        pad_id: as in :func:`lm_loss`.
        seed: seeds the batch sampler.

    Returns:
        The function ``loss_fn(model, step) -> scalar``.
    """
    for name, t in (("inputs", inputs), ("labels", labels)):
        if not isinstance(t, Tensor) or t.dtype != torch.long or t.dim() != 2:
            raise TypeError(f"{name} must be a (N, T) LongTensor")
    if inputs.shape != labels.shape:
        raise ValueError(
            f"inputs {tuple(inputs.shape)} and labels {tuple(labels.shape)} differ in shape"
        )
    validation.check_positive_int("batch_size", batch_size)
    if batch_size > inputs.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the {inputs.shape[0]} training rows")
    generator = torch.Generator().manual_seed(seed)

    def loss_fn(model: nn.Module, step: int) -> Tensor:
        rows = torch.randperm(inputs.shape[0], generator=generator)[:batch_size]  # (batch_size,)
        length = max(1, int((inputs[rows] != pad_id).sum(1).max()))  # right padding: trim it
        return lm_loss(model, inputs[rows, :length], labels[rows, :length], pad_id)

    return loss_fn
