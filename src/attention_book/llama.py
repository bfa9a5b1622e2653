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
from attention_book.generation import KVCache


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
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide d_model={self.d_model}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}: "
                f"each key/value head serves the same number of query heads"
            )
        if (self.d_model // self.num_heads) % 2:
            raise ValueError(f"the head width d_k = {self.d_model // self.num_heads} must be even")
        if not self.norm_eps > 0 or not self.rope_base > 1:
            raise ValueError(f"need norm_eps > 0 and rope_base > 1, got {self}")

    @property
    def d_k(self) -> int:
        """The width of one head, D / H."""
        return self.d_model // self.num_heads


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang and Sennrich, 2019): x / rms(x) * g.

    LayerNorm subtracts the mean, divides by the standard deviation, then scales and shifts;
    RMSNorm only divides by the root mean square and scales. No mean, no bias.

    Args:
        d: the width normalised (the last dimension).
        eps: added to the mean square before the square root.
    """

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        validation.check_positive_int("d", d)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., d) -> (..., d)``."""
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return self.weight * (x * inv_rms)


class SwiGLU(nn.Module):
    """The gated feed-forward network W_down (SiLU(x W_gate) * x W_up) (Shazeer, 2020), no biases.

    Args:
        d_model: D.
        d_ff: the hidden width.
    """

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_gate = nn.Linear(d_model, d_ff, bias=False)
        self.w_up = nn.Linear(d_model, d_ff, bias=False)
        self.w_down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D) -> (..., D)``."""
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))  # (..., d_ff) -> (..., D)


def repeat_kv(x: Tensor, repeats: int) -> Tensor:
    """Let each key/value head serve ``repeats`` consecutive query heads.

    Args:
        x: ``(B, H_kv, S, d)``.
        repeats: H / H_kv.

    Returns:
        ``(B, H_kv * repeats, S, d)``: head h is ``x[:, h // repeats]``.
    """
    if repeats == 1:
        return x
    B, H_kv, S, d = x.shape
    x = x[:, :, None].expand(B, H_kv, repeats, S, d)  # (B, H_kv, 1, S, d) -> (B, H_kv, r, S, d)
    return x.reshape(B, H_kv * repeats, S, d)  # (B, H, S, d)


class GroupedQueryAttention(nn.Module):
    """Causal self-attention in which groups of query heads share a key/value head, with RoPE.

    Args:
        d_model: D.
        num_heads: H query heads, d_k = D / H each.
        num_kv_heads: H_kv key/value heads; must divide H.
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int):
        super().__init__()
        validation.check_positive_int("num_kv_heads", num_kv_heads)
        if d_model % num_heads or num_heads % num_kv_heads:
            raise ValueError(
                f"need num_heads | d_model and num_kv_heads | num_heads, got d_model={d_model}, "
                f"num_heads={num_heads}, num_kv_heads={num_kv_heads}"
            )
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.d_k = d_model // num_heads
        self.w_q = nn.Linear(d_model, num_heads * self.d_k, bias=False)
        self.w_k = nn.Linear(d_model, num_kv_heads * self.d_k, bias=False)
        self.w_v = nn.Linear(d_model, num_kv_heads * self.d_k, bias=False)
        self.w_o = nn.Linear(num_heads * self.d_k, d_model, bias=False)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        mask: Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from the T new positions of ``x`` to every position so far.

        Args:
            x: ``(B, T, D)``.
            rope: ``(cos, sin)`` from :func:`positional.rope_cos_sin` for the T positions, or
                None for no rotation.
            mask: bool, broadcastable to ``(B, H, T, S)``, True = may attend; None lets every
                query see every key.
            cache: a :class:`KVCache` that receives this layer's new keys and values
                (``(B, H_kv, T, d_k)``, before they are shared out to the query heads).
            layer: this layer's index in the cache.
            need_weights: compute the weights explicitly (:mod:`attention_book.attention`) and
                return them; otherwise use the fused kernel.

        Returns:
            ``(output, weights)``: ``(B, T, D)`` and ``(B, H, T, S)`` or None.
        """
        B, T, _ = x.shape
        q = self.w_q(x).view(B, T, self.num_heads, self.d_k).transpose(1, 2)  # (B, H, T, d_k)
        k = self.w_k(x).view(B, T, self.num_kv_heads, self.d_k).transpose(1, 2)  # (B, H_kv, T, d_k)
        v = self.w_v(x).view(B, T, self.num_kv_heads, self.d_k).transpose(1, 2)  # (B, H_kv, T, d_k)
        if rope is not None:
            q, k = positional.rotate(q, *rope), positional.rotate(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H_kv, S, d_k) each
        repeats = self.num_heads // self.num_kv_heads
        if need_weights:
            k, v = repeat_kv(k, repeats), repeat_kv(v, repeats)  # (B, H, S, d_k) each
            heads, weights = attention.scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, d_k)
        elif T == 1 and mask is None:
            # One new token: the r query heads that share a key/value head are r queries against
            # the same keys, so attention runs on the H_kv heads without copying any key.
            weights = None
            H_kv, r = self.num_kv_heads, repeats
            q = q.view(B, H_kv, r, self.d_k)  # (B, H, 1, d_k) -> (B, H_kv, r, d_k)
            heads = F.scaled_dot_product_attention(q, k, v)  # (B, H_kv, r, d_k)
            heads = heads.view(B, self.num_heads, 1, self.d_k)  # (B, H, 1, d_k)
        else:
            weights = None
            k, v = repeat_kv(k, repeats), repeat_kv(v, repeats)  # (B, H, S, d_k) each
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, d_k)
        concat = heads.transpose(1, 2).reshape(B, T, -1)  # (B, H, T, d_k) -> (B, T, D)
        return self.w_o(concat), weights  # (B, T, D)


class LlamaBlock(nn.Module):
    """x + attention(RMSNorm(x)), then + SwiGLU(RMSNorm(.)): a pre-norm decoder block."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = GroupedQueryAttention(config.d_model, config.num_heads, config.num_kv_heads)
        self.ffn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.ffn = SwiGLU(config.d_model, config.d_ff)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        mask: Tensor | None,
        cache: KVCache | None,
        layer: int,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``(B, T, D) -> (B, T, D)``, and the attention weights if asked (see the attention)."""
        a, weights = self.attn(self.attn_norm(x), rope, mask, cache, layer, need_weights)
        x = x + a
        return x + self.ffn(self.ffn_norm(x)), weights


class Llama(nn.Module):
    """A decoder-only LLaMA-style language model.

    Args:
        config: the hyperparameters.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"config must be a LlamaConfig, got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(LlamaBlock(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = (
            None
            if config.tie_embeddings
            else nn.Linear(config.d_model, config.vocab_size, bias=False)
        )

    def _run(
        self, ids: Tensor, cache: KVCache | None, need_weights: bool
    ) -> tuple[Tensor, list[Tensor]]:
        if not isinstance(ids, Tensor) or ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"ids must be an integer tensor of token ids, got {ids!r}")
        if ids.dim() != 2 or ids.shape[1] < 1:
            raise ValueError(f"ids must be (B, T) with T >= 1, got shape {tuple(ids.shape)}")
        past = 0 if cache is None else cache.length  # the position of the first new token
        T = ids.shape[1]
        if past + T > self.config.max_len:
            raise ValueError(f"{past} + {T} positions exceed max_len={self.config.max_len}")
        positions = torch.arange(past, past + T, device=ids.device)  # (T,)
        rope = positional.rope_cos_sin(positions, self.config.d_k, self.config.rope_base)
        # Query t (at position past + t) may attend to keys 0 .. past + t. A single new token
        # may attend to everything, so the fused kernel needs no mask then.
        mask = None
        if T > 1 or need_weights:
            mask = torch.ones(T, past + T, dtype=torch.bool, device=ids.device).tril(past)
        x = self.embed(ids)  # (B, T) -> (B, T, D)
        all_weights = []
        for i, block in enumerate(self.blocks):
            x, weights = block(x, rope, mask, cache, i, need_weights)  # (B, T, D)
            if need_weights:
                all_weights.append(weights)
        x = self.norm(x)
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(x, weight), all_weights  # (B, T, D) -> (B, T, V)

    def forward(self, ids: Tensor, cache: KVCache | None = None) -> Tensor:
        """Next-token logits, following :mod:`attention_book.generation`'s protocol.

        Args:
            ids: ``(B, T)`` token ids; with a cache, the tokens after the ``cache.length``
                positions already read.
            cache: None, or a :class:`KVCache` with ``config.num_layers`` layers.

        Returns:
            ``(B, T, V)`` logits.
        """
        return self._run(ids, cache, need_weights=False)[0]

    @torch.no_grad()
    def attention_weights(self, ids: Tensor) -> Tensor:
        """Every layer's attention weights on ``ids``, computed by the explicit path.

        Args:
            ids: ``(B, T)`` token ids.

        Returns:
            ``(N, B, H, T, T)``: layer, sequence, head, query, key.
        """
        return torch.stack(self._run(ids, None, need_weights=True)[1])  # (N, B, H, T, T)

    def num_parameters(self) -> int:
        """The number of distinct parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

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
    "attn_norm": "attn_norm",
    "attn_q": "attn.w_q",
    "attn_k": "attn.w_k",
    "attn_v": "attn.w_v",
    "attn_output": "attn.w_o",
    "ffn_norm": "ffn_norm",
    "ffn_gate": "ffn.w_gate",
    "ffn_up": "ffn.w_up",
    "ffn_down": "ffn.w_down",
}


def _gguf_name_to_ours(name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``blocks.3.attn.w_q.weight``; the top-level tensors likewise."""
    top = {
        "token_embd.weight": "embed.weight",
        "output_norm.weight": "norm.weight",
        "output.weight": "lm_head.weight",
    }
    if name in top:
        return top[name]
    blk, i, part, suffix = name.split(".")
    if blk != "blk" or part not in _GGUF_NAMES:
        raise ValueError(f"unknown GGUF tensor {name!r}")
    return f"blocks.{i}.{_GGUF_NAMES[part]}.{suffix}"


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
