"""A decoder-only Transformer (GPT): the encoder layer in pre-LN run with a causal mask.

Unlike GPT-2, positions are sinusoidal (so ``max_len`` costs no parameters) and embeddings
are scaled by sqrt(D) (Vaswani et al., 2017, section 3.4). The token embedding is also the
output layer (weight tying): it starts at std ``1 / sqrt(D)`` so that logits are of order 1,
and the scale by sqrt(D) brings its rows up to the size of the positional encoding."""

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
    """Hyperparameters of :class:`GPT`; ``max_len`` counts prompt and output."""

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
    """Embeddings, positions, pre-LN causal blocks, a final norm and a tied output layer."""

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
        """``ids (B, T)`` -> ``(B, T, V)`` logits; with a cache, after ``cache.length`` tokens."""
        logits, _ = self._run(ids, cache, need_weights=False)
        return logits

    def _run(
        self, ids: Tensor, cache: KVCacheLike | None, need_weights: bool
    ) -> tuple[Tensor, list[Tensor]]:
        """:meth:`forward`, and with ``need_weights`` each layer's ``(B, H, T, S)`` weights."""
        # the first new position; absolute positions rule out a cache that rotates keys
        offset = validation.check_cache(cache, self.config.num_layers, rotary=False)
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
        """One ``(B, H, T, S)`` tensor per layer, computed explicitly (S = T without a cache)."""
        return self._run(ids, cache, need_weights=True)[1]


#: Blocks of the date-translation GPT: five blocks of self-attention and feed-forward network
#: hold 1% fewer parameters than the encoder-decoder's two encoder and two decoder layers.
DATES_NUM_LAYERS = 5


def dates_config(recipe: dates.Recipe = dates.RECIPE) -> GPTConfig:
    """The GPT of chapter 12 for the dates task: the encoder-decoder recipe's sizes, one vocabulary
    and :data:`DATES_NUM_LAYERS` blocks (171,200 parameters against 172,942)."""
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
