"""Text generation from a decoder-only model: sampling rules and the key-value cache.

Every function here reads the model in eval mode and leaves its mode as it found it
(:func:`attention_book.train.eval_mode`), so dropout never changes a token.

The protocol a model follows to be driven by :func:`generate`:

* ``model.config.max_len`` is the longest sequence it can read, and ``model.config.num_layers``
  the number of attention layers that keep a cache;
* ``model(ids, cache=None)`` maps ``(B, T)`` token ids to ``(B, T, V)`` next-token logits;
* with a :class:`KVCache`, ``ids`` are the tokens that follow the ``cache.length`` positions already
  read: the model reads ``cache.length`` once, at the start of its forward pass (the position of
  its first new token), and each attention layer hands its new keys and values to
  ``cache.update(layer_idx, k, v)`` (the cache protocol of :mod:`attention_book.multihead`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from attention_book import train, validation


class LayerCache:
    """Keys and values kept per attention layer, in two lists: what every list-backed cache
    (:class:`KVCache`, :class:`attention_book.serving.SinkCache`) shares."""

    def __init__(self, num_layers: int):
        num_layers = validation.check_positive_int("num_layers", num_layers)
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    @property
    def num_layers(self) -> int:
        """The number of attention layers the cache holds."""
        return len(self.keys)

    @property
    def length(self) -> int:
        """The number of positions held (those of layer 0, which is updated first)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]


class KVCache(LayerCache):
    """The keys and values each attention layer has computed so far, kept between steps.

    Each layer's keys and values are ``(B, H_kv, S, d_k)``; a step appends the new positions along
    ``S``. Its memory grows by ``2 * num_layers * H_kv * d_k`` numbers per token and sequence.

    Args:
        num_layers: how many attention layers store keys and values.
    """

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append one layer's new keys and values; return that layer's keys and values so far.

        Args:
            layer: the layer's index, from 0.
            k: ``(B, H_kv, T_new, d_k)`` keys of the new positions.
            v: ``(B, H_kv, T_new, d_v)`` values of the new positions.

        Returns:
            ``(keys, values)``, each ``(B, H_kv, S + T_new, d)`` for the S positions cached before.
        """
        layer = validation.check_cache_update(layer, self.num_layers, k, v, "KVCache")
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None:
            if old_k.shape[:2] != k.shape[:2] or old_k.shape[-1] != k.shape[-1]:
                raise ValueError(
                    f"layer {layer} caches keys of shape {tuple(old_k.shape)}; new keys of shape "
                    f"{tuple(k.shape)} do not continue them"
                )
            k = torch.cat([old_k, k], dim=-2)  # (B, H_kv, S, d_k) + (B, H_kv, T_new, d_k)
            v = torch.cat([old_v, v], dim=-2)  # (B, H_kv, S, d_v) + (B, H_kv, T_new, d_v)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def memory_bytes(self) -> int:
        """Bytes held by every cached key and value tensor."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (rejected draft tokens, for instance)."""
        length = validation.check_non_negative_int("length", length)
        if length > self.length:
            raise ValueError(f"cannot crop a cache of {self.length} positions to {length}")
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                if t is not None:
                    store[i] = t[..., :length, :]  # (B, H_kv, length, d)


def next_token_distribution(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """The probabilities a sampler draws the next token from, after the sampling rules.

    Temperature divides the logits (below 1 sharpens, above 1 flattens; 0 means greedy: all the
    probability on the largest logit). ``top_k`` keeps the k most likely tokens, and every token
    tied with the k-th largest logit, so a tie can keep more than k; ``top_p`` keeps
    the smallest set of most likely tokens whose probabilities sum to at least p (the nucleus,
    Holtzman et al., 2020). The kept probabilities are renormalised.

    Args:
        logits: ``(..., V)`` unnormalised scores of the next token.
        temperature: at least 0.
        top_k: None, or at least 1.
        top_p: None, or in (0, 1].

    Returns:
        ``(..., V)`` probabilities that sum to 1 along the last dimension.
    """
    top_k = _check_sampling(temperature, top_k, top_p)
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        raise TypeError("logits must be a floating-point tensor of shape (..., V)")
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ValueError("logits must be finite or -inf, but hold NaN or +inf")
    logits = logits.float()
    best = logits.amax(dim=-1, keepdim=True)  # (..., 1)
    if torch.isneginf(best).any():
        raise ValueError("a row of logits is all -inf: no token can be drawn")
    if temperature == 0:
        best = logits.argmax(dim=-1, keepdim=True)  # (..., 1)
        return torch.zeros_like(logits).scatter_(-1, best, 1.0)  # (..., V)
    # Subtract the largest logit first: the shifted logits are at most 0, so dividing them by
    # a tiny temperature gives -inf at worst, never inf - inf = NaN.
    logits = (logits - best) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)  # (..., V)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (..., V) twice
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
        drop_sorted = before >= top_p  # the first token is always kept (before = 0)
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


@torch.no_grad()
def generate(
    model: nn.Module,
    ids: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    cache: object | None = None,
) -> Tensor:
    """Extend each prompt by up to ``max_new_tokens`` tokens, one token at a time.

    Args:
        model: follows the protocol in this module's docstring.
        ids: ``(B, T)`` integer prompt ids, T >= 1.
        max_new_tokens: how many tokens to add at most.
        temperature, top_k, top_p: the sampling rules of :func:`next_token_distribution`;
            ``temperature=0`` is greedy decoding.
        eos_id: a row that produces this token stops; its later positions hold ``eos_id`` too.
            Generation ends early once every row has stopped.
        use_cache: keep keys and values between steps (:class:`KVCache`) instead of reading the
            whole sequence again at each step. The tokens are the same either way.
        generator: a seeded ``torch.Generator`` makes sampling reproducible.
        cache: a fresh (empty) cache that follows the protocol of
            :mod:`attention_book.multihead`, such as :class:`attention_book.serving.PagedKVCache`;
            None means a new :class:`KVCache` (with ``use_cache``). With a cache that rotates
            keys by their place in it (``rotates_keys``), only the prompt, and the cache's
            ``capacity`` plus one, must fit in ``max_len``: the text may grow past it.

    Returns:
        ``(B, T + n)`` ids, the prompts followed by n <= ``max_new_tokens`` new tokens.
    """
    _check_sampling(temperature, top_k, top_p)
    max_new_tokens = validation.check_non_negative_int("max_new_tokens", max_new_tokens)
    if not isinstance(ids, Tensor) or ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids must be an int64 or int32 tensor of token ids, got {_describe(ids)}")
    if ids.dim() != 2 or ids.shape[1] < 1:
        raise ValueError(f"ids must be (B, T) with T >= 1, got shape {tuple(ids.shape)}")
    if hasattr(model, "encode") or not hasattr(getattr(model, "config", None), "num_layers"):
        raise TypeError(
            f"generate drives a decoder-only model (model(ids, cache) -> logits), got "
            f"{type(model).__name__}; for an encoder-decoder use decoding.greedy_decode or "
            f"decoding.beam_search"
        )
    max_len = model.config.max_len
    # A cache that rotates keys by their place in it (serving.SinkCache) keeps positions below
    # its capacity however long the text, so only the prompt must fit; the model checks each
    # step's positions itself.
    streams = use_cache and getattr(cache, "rotates_keys", False)
    if streams:
        capacity = getattr(cache, "capacity", None)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise TypeError(
                f"a cache that rotates keys must give its capacity (the most positions it "
                f"holds) as a positive int, got {capacity!r}"
            )
        if min(capacity, ids.shape[1] + max_new_tokens - 1) + 1 > max_len:
            raise ValueError(  # checked now, not when the cache fills
                f"the cache holds up to {capacity} positions, which plus one new token exceed "
                f"the model's max_len={max_len}"
            )
    if ids.shape[1] + (0 if streams else max_new_tokens) > max_len:
        raise ValueError(
            f"a prompt of {ids.shape[1]} tokens plus max_new_tokens={max_new_tokens} exceeds the "
            f"model's max_len={max_len}"
        )
    vocab_size = getattr(model.config, "vocab_size", None)
    if eos_id is not None:
        eos_id = validation.check_non_negative_int("eos_id", eos_id)
        if vocab_size is not None and eos_id >= vocab_size:
            raise ValueError(f"eos_id={eos_id} is outside the vocabulary [0, {vocab_size})")
    ids = ids.long()
    if cache is None:
        cache = KVCache(model.config.num_layers) if use_cache else None
    elif not use_cache:
        raise ValueError("a cache was given with use_cache=False; pass one or the other")
    elif validation.check_cache(cache, model.config.num_layers) != 0:
        raise ValueError(f"cache must be fresh (length 0), got one of length {cache.length}")
    with train.eval_mode(model):
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)  # (B,)
        step_input = ids
        for _ in range(max_new_tokens):
            logits = model(step_input if use_cache else ids, cache=cache)[:, -1]  # (B, V)
            probs = next_token_distribution(
                logits, temperature=temperature, top_k=top_k, top_p=top_p
            )
            if temperature == 0:
                new = probs.argmax(dim=-1)  # (B,)
            else:
                new = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
            if eos_id is not None:
                new = new.masked_fill(done, eos_id)
                done = done | (new == eos_id)
            ids = torch.cat([ids, new[:, None]], dim=1)  # (B, T) -> (B, T + 1)
            step_input = new[:, None]  # (B, 1)
            if eos_id is not None and bool(done.all()):
                break
    return ids


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> int | None:
    """Raise on a bad sampling rule; return ``top_k`` as a Python int (or None)."""
    if validation.check_number("temperature", temperature) < 0:
        raise ValueError(f"temperature must be at least 0 (0 is greedy), got {temperature}")
    if top_k is not None:
        top_k = validation.check_positive_int("top_k", top_k)
    if top_p is not None and not 0.0 < validation.check_number("top_p", top_p) <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    return top_k


def generate_many(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    batch_size: int = 1000,
    **kwargs: object,
) -> list[list[int]]:
    """Extend prompts of different lengths: :func:`generate` on batches of equal-length prompts.

    A protocol model reads no padding mask, so prompts are never padded: those of one length
    are generated together, in batches of at most ``batch_size``.

    Args:
        model: follows the protocol in this module's docstring.
        prompts: N prompts, each a non-empty sequence of token ids.
        max_new_tokens: as in :func:`generate`.
        batch_size: the most prompts per call of :func:`generate`.
        **kwargs: the keyword arguments of :func:`generate` (sampling rules, ``eos_id``, ...).

    Returns:
        N lists, the new tokens of each prompt in the order of ``prompts`` (after ``eos_id``,
        if given, only ``eos_id``).
    """
    if isinstance(prompts, (str, Tensor)) or len(prompts) == 0:
        raise ValueError("prompts must be a non-empty sequence of sequences of token ids")
    batch_size = validation.check_positive_int("batch_size", batch_size)
    if any(len(prompt) == 0 for prompt in prompts):
        empty = [i for i, prompt in enumerate(prompts) if len(prompt) == 0]
        raise ValueError(f"every prompt needs at least one token; prompts {empty[:5]} are empty")
    by_length: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(i)
    out: list[list[int]] = [[] for _ in prompts]
    for length, rows in sorted(by_length.items()):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            ids = torch.tensor([list(prompts[i]) for i in chunk])  # (b, length)
            new = generate(model, ids, max_new_tokens, **kwargs)[:, length:]  # (b, n)
            for i, row in zip(chunk, new.tolist(), strict=True):
                out[i] = row
    return out
