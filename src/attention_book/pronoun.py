"""A tiny attention model for the pronoun task of :mod:`attention_book.data` (chapter 6).

Token plus learned position embeddings, then a stack of single-head self-attention layers, each
computing ``x + Attention(x W_Q, x W_K, x W_V)``: no feed-forward network, no normalisation.
Chapter 6 reads the answer from the last layer's row of "it" (supervised attention); a model
that reads logits from the final vector of "it" uses :meth:`PronounAttender.states`.
"""

from __future__ import annotations

from torch import Tensor, nn

from attention_book import attention, validation


class SelfAttentionLayer(nn.Module):
    """Single-head self-attention with a residual connection: x + Attention(xW_Q, xW_K, xW_V)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        validation.check_positive_int("d_model", d_model)
        self.w_q, self.w_k, self.w_v = (nn.Linear(d_model, d_model, bias=False) for _ in range(3))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Args: x ``(B, T, D)``; mask None or bool, broadcastable to ``(B, T, T)``.

        Returns the new x ``(B, T, D)`` and the weights ``(B, T, T)``.
        """
        q, k, v = self.w_q(x), self.w_k(x), self.w_v(x)  # (B, T, D) each
        out, weights = attention.scaled_dot_product_attention(q, k, v, mask)  # (B, T, D)
        return x + out, weights


class PronounAttender(nn.Module):
    """Token and position embeddings, then ``num_layers`` :class:`SelfAttentionLayer`\\ s."""

    def __init__(self, vocab_size: int, length: int, d_model: int, num_layers: int) -> None:
        super().__init__()
        for name, n in [("vocab_size", vocab_size), ("length", length), ("num_layers", num_layers)]:
            validation.check_positive_int(name, n)
        self.embed, self.position = nn.Embedding(vocab_size, d_model), nn.Embedding(length, d_model)
        self.layers = nn.ModuleList(SelfAttentionLayer(d_model) for _ in range(num_layers))

    def states(
        self, tokens: Tensor, masks: list[Tensor | None] | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """The last layer's vectors ``(B, T, D)`` and every layer's weights ``(B, T, T)``.

        Args: tokens ``(B, T)`` ids, ``T <= length``; masks None or one mask (or None) per layer.
        """
        validation.check_ids(
            "tokens",
            tokens,
            vocab_size=self.embed.num_embeddings,
            max_len=self.position.num_embeddings,
        )
        masks = [None] * len(self.layers) if masks is None else list(masks)
        if len(masks) != len(self.layers):
            raise ValueError(f"masks has {len(masks)} entries for {len(self.layers)} layers")
        x = self.embed(tokens) + self.position.weight[: tokens.shape[1]]  # (B, T, D)
        all_weights = []
        for layer, mask in zip(self.layers, masks, strict=True):
            x, w = layer(x, mask)  # (B, T, D), (B, T, T)
            all_weights.append(w)
        return x, all_weights

    def forward(self, tokens: Tensor, masks: list[Tensor | None] | None = None) -> list[Tensor]:
        """Every layer's attention weights ``(B, T, T)`` for tokens ``(B, T)``."""
        return self.states(tokens, masks)[1]
