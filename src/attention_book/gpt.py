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
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attention_book import attention, dates, layers, positional, validation
from attention_book.multihead import KVCacheLike
from attention_book.train import lm_loss  # noqa: F401 (the loss of this model, named here too)
from attention_book.transformer import EncoderLayer


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
        validation.check_heads(self.d_model, self.num_heads)
        validation.check_even("d_model", self.d_model, "for the sinusoidal encoding")
        validation.check_probability("dropout", self.dropout)


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
            EncoderLayer(c.d_model, c.num_heads, c.d_ff, c.dropout, "gelu", True, layer_idx=i)
            for i in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.d_model)  # pre-LN: the residual stream is normalised at the end
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # weight tying: one (V, D) matrix
        self.scale = math.sqrt(c.d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        layers.xavier_init(self)
        # The tied matrix is initialised for its output role: logits of order 1 (module docstring).
        nn.init.normal_(self.embed.weight, std=self.config.d_model**-0.5)

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
        offset = validation.check_cache(cache, self.config.num_layers)  # first new position
        c = self.config
        validation.check_ids("ids", ids, vocab_size=c.vocab_size, max_len=c.max_len, offset=offset)
        T = ids.shape[1]
        x = self.embed(ids) * self.scale + self.pe[offset : offset + T]  # (B, T) -> (B, T, D)
        x = self.embed_dropout(x)
        mask = attention.causal_mask(T, offset=offset, device=ids.device)  # (T, S)
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask, cache, None, need_weights)  # (B, T, D), (B, H, T, S) or None
            weights.append(w)
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


#: Blocks of the date-translation GPT: five blocks of self-attention and feed-forward network
#: hold 1% fewer parameters than the encoder-decoder's two encoder and two decoder layers.
DATES_NUM_LAYERS = 5


def dates_config(recipe: dates.Recipe = dates.RECIPE) -> GPTConfig:
    """The GPT of chapter 12 for the date task: the width, heads, feed-forward width and dropout
    of the encoder-decoder ``recipe`` trains, one vocabulary (the source's, which holds the
    target's characters), :data:`DATES_NUM_LAYERS` blocks and room for ``dates.LM_MAX_LEN``
    positions (171,200 parameters against the encoder-decoder's 172,942)."""
    if not isinstance(recipe, dates.Recipe):
        raise TypeError(f"recipe must be a dates.Recipe, got {type(recipe).__name__}")
    return GPTConfig(
        vocab_size=len(dates.SOURCE_VOCAB),
        d_model=recipe.d_model,
        num_heads=recipe.num_heads,
        num_layers=DATES_NUM_LAYERS,
        d_ff=recipe.d_ff,
        max_len=dates.LM_MAX_LEN,
        dropout=recipe.dropout,
    )
