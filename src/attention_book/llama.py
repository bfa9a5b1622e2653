"""A LLaMA-style decoder: the 2017 decoder with the components a modern language model swaps in.

Compared with :mod:`attention_book.transformer`'s 2017 decoder, a LLaMA block (Touvron et al.,
2023) uses RMSNorm instead of LayerNorm, applied before each sub-layer (pre-norm); rotary position
embedding (RoPE) on queries and keys instead of sinusoids added to the input; grouped-query
attention, where several query heads share one key/value head (Ainslie et al., 2023); a SwiGLU
feed-forward network instead of ReLU (Shazeer, 2020); no biases; and, in small models such as
SmolLM2, one matrix for the input embedding and the output projection.

:class:`Llama` follows the model protocol of :mod:`attention_book.generation`, so
``generation.generate`` drives it. :meth:`Llama.from_gguf` loads a llama.cpp GGUF file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import attention, positional, validation
from attention_book.layers import RMSNorm, SwiGLU  # noqa: F401 (LLaMA's parts, named here too)
from attention_book.multihead import KVCacheLike, repeat_kv  # noqa: F401 (repeat_kv: GQA's sharing)
from attention_book.transformer import EncoderLayer


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """The hyperparameters of a LLaMA-style decoder (defaults: SmolLM2-135M).

    Args:
        vocab_size: V.
        d_model: D, the width of the residual stream.
        num_layers: N, the number of blocks.
        num_heads: H, query heads; must divide ``d_model`` (d_k = D / H, even for RoPE).
        num_kv_heads: key/value heads; must divide ``num_heads`` (H = num_kv_heads is ordinary
            multi-head attention, 1 is multi-query attention).
        d_ff: the hidden width of the SwiGLU feed-forward network.
        max_len: the longest sequence the model reads (its context length).
        rope_base: the base of RoPE's wavelengths.
        norm_eps: the epsilon of RMSNorm.
        tie_embeddings: the output projection reuses the input embedding matrix.
    """

    vocab_size: int = 49152
    d_model: int = 576
    num_layers: int = 30
    num_heads: int = 9
    num_kv_heads: int = 3
    d_ff: int = 1536
    max_len: int = 8192
    rope_base: float = 100000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "d_ff"):
            validation.check_positive_int(name, getattr(self, name))
        validation.check_positive_int("max_len", self.max_len)
        validation.check_heads(self.d_model, self.num_heads, self.num_kv_heads)
        validation.check_even("the head width d_k", self.d_k, "for RoPE, which turns pairs")
        if not validation.check_number("norm_eps", self.norm_eps) > 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}")
        if not validation.check_number("rope_base", self.rope_base) > 1:
            raise ValueError(f"rope_base must be a finite number above 1, got {self.rope_base}")
        validation.check_bool("tie_embeddings", self.tie_embeddings)

    @property
    def d_k(self) -> int:
        """The width of one head, D / H."""
        return self.d_model // self.num_heads


class Llama(nn.Module):
    """A decoder-only LLaMA-style language model: the book's pre-norm block with RMSNorm,
    rotary positions, grouped-query attention, SwiGLU and no biases.

    Args:
        config: the hyperparameters.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"config must be a LlamaConfig, got {type(config).__name__}")
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(
                c.d_model,
                c.num_heads,
                c.d_ff,
                activation="swiglu",
                norm_first=True,
                num_kv_heads=c.num_kv_heads,
                bias=False,
                norm="rms",
                eps=c.norm_eps,
                layer_idx=i,
            )
            for i in range(c.num_layers)
        )
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        self.lm_head = None if c.tie_embeddings else nn.Linear(c.d_model, c.vocab_size, bias=False)

    def _run(
        self, ids: Tensor, cache: KVCacheLike | None, need_weights: bool
    ) -> tuple[Tensor, list[Tensor]]:
        offset = validation.check_cache(
            cache, self.config.num_layers
        )  # position of the first new token
        c = self.config
        validation.check_ids("ids", ids, vocab_size=c.vocab_size, max_len=c.max_len, offset=offset)
        T = ids.shape[1]
        positions = torch.arange(offset, offset + T, device=ids.device)  # (T,)
        if getattr(cache, "rotates_keys", False):  # keys turned by their place in the cache
            positions = torch.arange(offset + T, device=ids.device)  # (S,)
        rope = positional.rope_cos_sin(positions, c.d_k, c.rope_base, self.embed.weight.dtype)
        # Query t (at position offset + t) may attend to keys 0 .. offset + t. A single new
        # token may attend to everything, so the fused kernel needs no mask then.
        mask = None
        if T > 1 or need_weights:
            mask = attention.causal_mask(T, offset=offset, device=ids.device)  # (T, S)
        x = self.embed(ids)  # (B, T) -> (B, T, D)
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask, cache, rope, need_weights)  # (B, T, D), (B, H, T, S) or None
            weights.append(w)
        x = self.norm(x)
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(x, weight), weights  # (B, T, D) -> (B, T, V)

    def forward(self, ids: Tensor, cache: KVCacheLike | None = None) -> Tensor:
        """Next-token logits, following :mod:`attention_book.generation`'s protocol.

        Args:
            ids: ``(B, T)`` token ids; with a cache, the tokens after the ``cache.length``
                positions already read.
            cache: None, or a :class:`~attention_book.generation.KVCache` with
                ``config.num_layers`` layers.

        Returns:
            ``(B, T, V)`` logits.
        """
        return self._run(ids, cache, need_weights=False)[0]

    @torch.no_grad()
    def attention_weights(self, ids: Tensor, cache: KVCacheLike | None = None) -> list[Tensor]:
        """Every layer's attention weights on ``ids``, computed by the explicit path.

        Args:
            ids: ``(B, T)`` token ids; cache: as in :meth:`forward`.

        Returns:
            One ``(B, H, T, S)`` tensor per layer (S = T without a cache).
        """
        return self._run(ids, cache, need_weights=True)[1]

    @classmethod
    def from_gguf(cls, path: str | Path) -> Llama:
        """Load a LLaMA-architecture GGUF file (llama.cpp's format), dequantised to float32.

        The rows of W_Q and W_K are put back in the order of the rotate-half RoPE
        (:func:`unpermute_rows`), undoing llama.cpp's converter.

        Args:
            path: the ``.gguf`` file.

        Returns:
            The model in eval mode.
        """
        import gguf  # a runtime dependency, imported only by the loaders

        return cls.from_gguf_reader(gguf.GGUFReader(str(path)))

    @classmethod
    def from_gguf_reader(cls, reader: object) -> Llama:
        """:meth:`from_gguf` for a file already opened with ``gguf.GGUFReader``."""
        import gguf

        config = config_from_gguf(reader)
        with torch.device("meta"):
            model = cls(config)  # no memory and no random init: every weight comes from the file
        state = {}
        for t in reader.tensors:
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
            name = _gguf_name_to_ours(t.name)
            if name.endswith("attn.w_q.weight"):
                w = unpermute_rows(w, config.num_heads)
            elif name.endswith("attn.w_k.weight"):
                w = unpermute_rows(w, config.num_kv_heads)
            if not w.flags.writeable:  # float32 tensors are read-only views of the file
                w = w.copy()
            state[name] = torch.from_numpy(np.ascontiguousarray(w))
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()


def config_from_gguf(reader: object) -> LlamaConfig:
    """The :class:`LlamaConfig` a ``gguf.GGUFReader`` of a LLaMA-architecture file describes."""

    def field(key: str) -> object:
        if key not in reader.fields:
            raise ValueError(f"the GGUF file has no metadata key {key!r}")
        return reader.fields[key].contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise ValueError(f"expected a llama-architecture GGUF file, got {arch!r}")
    names = {t.name for t in reader.tensors}
    if "tokenizer.ggml.tokens" not in reader.fields:
        raise ValueError(
            "the GGUF file has no token list (tokenizer.ggml.tokens), so its vocabulary size "
            "is unknown"
        )
    return LlamaConfig(
        vocab_size=len(reader.fields["tokenizer.ggml.tokens"].data),
        d_model=int(field("llama.embedding_length")),
        num_layers=int(field("llama.block_count")),
        num_heads=int(field("llama.attention.head_count")),
        num_kv_heads=int(field("llama.attention.head_count_kv")),
        d_ff=int(field("llama.feed_forward_length")),
        max_len=int(field("llama.context_length")),
        rope_base=float(field("llama.rope.freq_base")),
        # stored as float32 (9.99999975e-06): round to the value that was written
        norm_eps=float(f"{float(field('llama.attention.layer_norm_rms_epsilon')):.6g}"),
        tie_embeddings="output.weight" not in names,
    )


_GGUF_NAMES = {
    "attn_norm": "norm1",
    "attn_q": "self_attn.w_q",
    "attn_k": "self_attn.w_k",
    "attn_v": "self_attn.w_v",
    "attn_output": "self_attn.w_o",
    "ffn_norm": "norm2",
    "ffn_gate": "ff.w_gate",
    "ffn_up": "ff.w_up",
    "ffn_down": "ff.w_down",
}


def _gguf_name_to_ours(name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``layers.3.self_attn.w_q.weight``; the top-level ones likewise."""
    top = {
        "token_embd.weight": "embed.weight",
        "output_norm.weight": "norm.weight",
        "output.weight": "lm_head.weight",
    }
    if name in top:
        return top[name]
    if name == "rope_freqs.weight":
        raise ValueError(
            "the GGUF file holds rope_freqs.weight, the frequency factors of a scaled-RoPE "
            "model (such as Llama 3.1); this package implements plain RoPE only"
        )
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != "blk" or parts[2] not in _GGUF_NAMES:
        raise ValueError(f"unknown GGUF tensor {name!r}")
    _, i, part, suffix = parts
    return f"layers.{i}.{_GGUF_NAMES[part]}.{suffix}"


def permute_rows(w: np.ndarray | Tensor, num_heads: int) -> np.ndarray | Tensor:
    """llama.cpp's reordering of the rows of W_Q or W_K, for RoPE on adjacent pairs.

    Within each head, rotate-half RoPE pairs row i with row i + d/2; llama.cpp's kernels pair
    rows 2i and 2i + 1, so its converter interleaves the two halves.

    Args:
        w: ``(num_heads * d, D)``.
        num_heads: the heads stacked in ``w``.

    Returns:
        The same rows, interleaved within each head.
    """
    rows = w.shape[0]
    if rows % (2 * num_heads):
        raise ValueError(f"{rows} rows do not split into {num_heads} heads of even width")
    head = w.reshape(num_heads, 2, rows // num_heads // 2, *w.shape[1:])  # (H, 2, d/2, D)
    return head.swapaxes(1, 2).reshape(w.shape)  # (H, d/2, 2, D) -> (H * d, D)


def unpermute_rows(w: np.ndarray | Tensor, num_heads: int) -> np.ndarray | Tensor:
    """The inverse of :func:`permute_rows`: back to the rotate-half order of each head's rows."""
    rows = w.shape[0]
    if rows % (2 * num_heads):
        raise ValueError(f"{rows} rows do not split into {num_heads} heads of even width")
    head = w.reshape(num_heads, rows // num_heads // 2, 2, *w.shape[1:])  # (H, d/2, 2, D)
    return head.swapaxes(1, 2).reshape(w.shape)  # (H, 2, d/2, D) -> (H * d, D)


def kv_cache_bytes(config: LlamaConfig, num_tokens: int, bytes_per_number: int = 4) -> int:
    """The memory a key-value cache holds for one sequence of ``num_tokens`` tokens.

    Each layer keeps a key and a value of width d_k for each of its H_kv key/value heads.
    """
    validation.check_positive_int("num_tokens", num_tokens)
    per_token = 2 * config.num_layers * config.num_kv_heads * config.d_k
    return per_token * num_tokens * bytes_per_number
