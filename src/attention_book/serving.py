"""Serving a language model: caches that page, slide or shrink, and speculative decoding.

Three caches follow the key-value cache protocol of :mod:`attention_book.multihead`
(``length``, ``update(layer, k, v)``, ``memory_bytes()``), so ``generation.generate(...,
cache=...)`` and every model of the book drive them unchanged (:class:`SinkCache` only models
with rotary positions, such as ``llama.Llama``; ``gpt.GPT`` refuses it):

* :class:`PagedKVCache` keeps keys and values in fixed-size blocks of a shared pool, found
  through a block table per sequence (Kwon et al., 2023, vLLM's PagedAttention);
* :class:`SinkCache` keeps the first few positions and a sliding window of the last ones, so it
  never grows (Xiao et al., 2024, StreamingLLM);
* :class:`QuantizedKVCache` stores keys and values as small integers with a scale per head and
  position.

Two extensions of the protocol, both optional and read with ``getattr``:

* ``cache.rotates_keys = True``: the cache keeps keys *before* the rotary position embedding
  and the model rotates the keys it returns by their position inside the cache, and each new
  query by its own position there (:class:`SinkCache`). Positions then stay below the cache's
  size, however long the text; such a cache also tells that size, ``cache.capacity`` (the most
  positions it holds between updates), which :func:`generation.generate` checks up front;
* ``cache.crop(length)`` forgets every position from ``length`` on (used by
  :func:`speculative_generate` to drop rejected draft tokens).

:func:`speculative_generate` lets a cheap draft propose tokens that the model checks in one
forward pass (Leviathan et al., 2023; Chen et al., 2023); :func:`early_exit` builds such a draft
from a model's own first layers (as in LayerSkip, Elhoushi et al., 2024).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses

import torch
from torch import Tensor, nn

from attention_book import generation, train, validation

# --- paged cache ------------------------------------------------------------------------------


class BlockPool:
    """A pool of fixed-size blocks of keys and values, shared by the sequences of a server.

    Block ``i`` of layer ``l`` holds ``block_size`` positions of every key/value head:
    ``keys[l][i]`` is ``(H_kv, block_size, d_k)``. The tensors are made at the first write,
    when the head count and width are known.

    Args:
        num_layers: the attention layers of the model.
        block_size: positions per block.
        num_blocks: the pool's capacity; None lets it grow (doubling) when it runs out.
    """

    def __init__(self, num_layers: int, block_size: int = 16, num_blocks: int | None = None):
        self.num_layers = validation.check_positive_int("num_layers", num_layers)
        self.block_size = validation.check_positive_int("block_size", block_size)
        if num_blocks is not None:
            num_blocks = validation.check_positive_int("num_blocks", num_blocks)
        self.max_blocks = num_blocks
        self.capacity = 0  # blocks allocated so far
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers
        self.free: list[int] = []

    @property
    def blocks_in_use(self) -> int:
        """Blocks held by some sequence."""
        return self.capacity - len(self.free)

    def allocate(self) -> int:
        """Take a free block (growing the pool if it may); return its index."""
        if not self.free:
            if self.max_blocks is not None and self.capacity >= self.max_blocks:
                raise ValueError(
                    f"the pool of {self.max_blocks} blocks of {self.block_size} positions is "
                    f"full: free a finished sequence or build a larger pool (num_blocks)"
                )
            grow = max(1, self.capacity)
            if self.max_blocks is not None:
                grow = min(grow, self.max_blocks - self.capacity)
            self._grow(grow)
        return self.free.pop(0)

    def _grow(self, n: int) -> None:
        for layer in range(self.num_layers):
            for store in (self.keys, self.values):
                old = store[layer]
                if old is not None:
                    extra = old.new_zeros((n, *old.shape[1:]))  # (n, H_kv, block, d)
                    store[layer] = torch.cat([old, extra])  # (N + n, H_kv, block, d)
        self.free += range(self.capacity, self.capacity + n)
        self.capacity += n

    def release(self, blocks: list[int]) -> None:
        """Give blocks back to the pool."""
        self.free = sorted(self.free + list(blocks))

    def block_bytes(self) -> int:
        """Bytes of one block across every layer, keys and values (0 before the first write)."""
        total = 0
        for t in self.keys + self.values:
            if t is not None:
                total += t[0].numel() * t.element_size()
        return total


class _DefaultBlockSize(int):
    """The default ``block_size``, 16, told apart from an explicit 16 by identity."""


_DEFAULT_BLOCK_SIZE = _DefaultBlockSize(16)


class PagedKVCache:
    """A key-value cache in fixed-size blocks from a pool, with a block table per sequence.

    A sequence holds only the blocks its positions fill (the last one partly), instead of
    reserving room for the longest sequence it might reach; a finished sequence's blocks go
    back to the pool with :meth:`free` (Kwon et al., 2023). The rows of a batch are the
    sequences; they grow together, as :func:`generation.generate` drives them.

    Args:
        num_layers: how many attention layers store keys and values.
        block_size: positions per block.
        num_blocks: the pool's capacity in blocks; None lets it grow.
        pool: share another cache's :class:`BlockPool` (``other.pool``) instead of a new one;
            ``block_size`` and ``num_blocks`` must then agree with it or be left as they are.
    """

    def __init__(
        self,
        num_layers: int,
        block_size: int = _DEFAULT_BLOCK_SIZE,
        num_blocks: int | None = None,
        *,
        pool: BlockPool | None = None,
    ):
        if pool is None:
            pool = BlockPool(num_layers, block_size, num_blocks)
        elif not isinstance(pool, BlockPool) or pool.num_layers != num_layers:
            raise ValueError(f"pool must be a BlockPool of {num_layers} layers")
        elif (block_size is not _DEFAULT_BLOCK_SIZE and block_size != pool.block_size) or (
            num_blocks not in (None, pool.max_blocks)
        ):
            raise ValueError(
                f"block_size={block_size} and num_blocks={num_blocks} disagree with the shared "
                f"pool's {pool.block_size} and {pool.max_blocks}: leave them out with pool="
            )
        self.pool = pool
        self.num_layers = pool.num_layers
        self.block_size = pool.block_size
        self.block_tables: list[list[int]] = []  # one list of block indices per sequence
        self.lengths = [0] * self.num_layers  # positions written, per layer

    @property
    def length(self) -> int:
        """The number of positions cached (those of layer 0, which is updated first)."""
        return self.lengths[0]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write one layer's new keys and values into blocks; return all of that layer's.

        Args:
            layer: the layer's index, from 0.
            k, v: ``(B, H_kv, T_new, d)`` of the new positions.

        Returns:
            ``(keys, values)``, each ``(B, H_kv, S + T_new, d)``, gathered through the block
            tables.
        """
        layer = validation.check_cache_update(layer, self.num_layers, k, v, "PagedKVCache")
        B, H_kv, T, d = k.shape
        if not self.block_tables:
            self.block_tables = [[] for _ in range(B)]
        if len(self.block_tables) != B:
            raise ValueError(f"this cache holds {len(self.block_tables)} sequences, got B = {B}")
        start, end = self.lengths[layer], self.lengths[layer] + T
        needed = -(-end // self.block_size)  # blocks to cover positions 0 .. end - 1
        for table in self.block_tables:
            while len(table) < needed:
                table.append(self.pool.allocate())
        pool = self.pool
        if pool.keys[layer] is None:
            shape = (pool.capacity, H_kv, self.block_size, d)
            pool.keys[layer] = k.new_zeros(shape)
            pool.values[layer] = v.new_zeros(shape)
        if pool.keys[layer].shape[1:] != (H_kv, self.block_size, d):
            raise ValueError(
                f"layer {layer} stores blocks of shape {tuple(pool.keys[layer].shape[1:])}; "
                f"keys of shape {tuple(k.shape)} do not fit them"
            )
        table = torch.tensor(self.block_tables, device=k.device)  # (B, n_blocks)
        new = torch.arange(start, end, device=k.device)  # (T,)
        blocks, offsets = table[:, new // self.block_size], new % self.block_size  # (B, T), (T,)
        pool.keys[layer][blocks, :, offsets] = k.transpose(1, 2)  # (B, T, H_kv, d)
        pool.values[layer][blocks, :, offsets] = v.transpose(1, 2)  # (B, T, H_kv, d)
        self.lengths[layer] = end
        every = torch.arange(end, device=k.device)  # (S,)
        blocks, offsets = table[:, every // self.block_size], every % self.block_size
        keys = pool.keys[layer][blocks, :, offsets].transpose(1, 2)  # (B, H_kv, S, d)
        values = pool.values[layer][blocks, :, offsets].transpose(1, 2)  # (B, H_kv, S, d)
        return keys, values

    def memory_bytes(self) -> int:
        """Bytes of the blocks this cache's sequences hold (the last block counted whole)."""
        return sum(len(t) for t in self.block_tables) * self.pool.block_bytes()

    def free(self) -> None:
        """End the sequences: give their blocks back to the pool and empty the cache."""
        for table in self.block_tables:
            self.pool.release(table)
        self.block_tables = []
        self.lengths = [0] * self.num_layers


# --- sink cache --------------------------------------------------------------------------------


class SinkCache(generation.LayerCache):
    """A cache that never grows: the first ``num_sink`` positions and the last ``window``.

    StreamingLLM (Xiao et al., 2024): a model trained on full contexts puts much attention on
    its first tokens (attention sinks), so a window that drops them breaks it; keeping a few
    restores it. Keys are stored before the rotary embedding (``rotates_keys``): the model turns
    them by their position *inside the cache*, so positions never exceed ``num_sink + window``.
    After each update, positions beyond the sinks and the window are evicted; the queries of
    that update still see everything they were given.

    Args:
        num_layers: how many attention layers store keys and values.
        num_sink: the first positions always kept (0 gives a plain sliding window).
        window: the most recent positions kept.
    """

    rotates_keys = True

    def __init__(self, num_layers: int, num_sink: int = 4, window: int = 256):
        super().__init__(num_layers)  # length: the positions held, at most num_sink + window
        self.num_sink = validation.check_non_negative_int("num_sink", num_sink)
        self.window = validation.check_positive_int("window", window)
        self.seen = 0  # positions read so far, evicted or not (layer 0)

    @property
    def capacity(self) -> int:
        """The most positions held between updates: ``num_sink + window``."""
        return self.num_sink + self.window

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append unrotated keys and values; return the held ones plus the new, then evict.

        Returns:
            ``(keys, values)``, each ``(B, H_kv, S + T_new, d)`` with S the positions held
            before; the model rotates key j by position j.
        """
        layer = validation.check_cache_update(layer, self.num_layers, k, v, "SinkCache")
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=-2)  # (B, H_kv, S + T_new, d)
            v = torch.cat([self.values[layer], v], dim=-2)  # (B, H_kv, S + T_new, d)
        if layer == 0:
            self.seen += v.shape[-2] - self.length  # the new positions
        keep_k, keep_v = k, v
        if k.shape[-2] > self.capacity:
            s, w = self.num_sink, self.window
            keep_k = torch.cat([k[..., :s, :], k[..., -w:, :]], dim=-2)  # (B, H_kv, s + w, d)
            keep_v = torch.cat([v[..., :s, :], v[..., -w:, :]], dim=-2)  # (B, H_kv, s + w, d)
        self.keys[layer], self.values[layer] = keep_k, keep_v
        return k, v

    def memory_bytes(self) -> int:
        """Bytes held by every cached key and value tensor."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


# --- quantised cache ---------------------------------------------------------------------------


def quantize(x: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Symmetric integer quantisation with one scale per vector of the last dimension.

    Args:
        x: ``(..., d)`` floats.
        bits: 2 to 8; the integers lie in [-(2^(bits-1) - 1), 2^(bits-1) - 1].

    Returns:
        ``(q, scale)``: ``q`` int8 ``(..., d)``, ``scale`` ``(..., 1)`` of x's dtype, with
        ``|x - q * scale| <= scale / 2`` everywhere.
    """
    top = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / top  # (..., 1)
    q = torch.round(x / scale).clamp(-top, top).to(torch.int8)  # (..., d)
    return q, scale


class QuantizedKVCache:
    """A key-value cache stored as ``bits``-bit integers with a scale per head and position.

    Each cached vector (one head, one position) is divided by its own scale, its largest
    absolute value over ``2^(bits-1) - 1``, and rounded; ``update`` returns the dequantised
    keys and values, so the model computes in its own dtype. The integers are stored one per
    byte (int8) whatever ``bits`` is, so the memory is a quarter of float32's plus the scales.

    Args:
        num_layers: how many attention layers store keys and values.
        bits: 2 to 8.
    """

    def __init__(self, num_layers: int, bits: int = 8):
        num_layers = validation.check_positive_int("num_layers", num_layers)
        bits = validation.check_positive_int("bits", bits)
        if not 2 <= bits <= 8:
            raise ValueError(f"bits must be between 2 and 8 (stored as int8), got {bits}")
        self.bits = bits
        self.store: list[list[Tensor] | None] = [None] * num_layers  # [qk, sk, qv, sv]

    @property
    def num_layers(self) -> int:
        """The number of attention layers the cache holds."""
        return len(self.store)

    @property
    def length(self) -> int:
        """The number of positions cached (those of layer 0, which is updated first)."""
        return 0 if self.store[0] is None else self.store[0][0].shape[-2]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Quantise and append one layer's keys and values; return all of them, dequantised.

        Returns:
            ``(keys, values)``, each ``(B, H_kv, S + T_new, d)`` in k's dtype.
        """
        layer = validation.check_cache_update(layer, self.num_layers, k, v, "QuantizedKVCache")
        new = [*quantize(k, self.bits), *quantize(v, self.bits)]
        old = self.store[layer]
        if old is not None:
            if old[0].shape[:2] != k.shape[:2] or old[0].shape[-1] != k.shape[-1]:
                raise ValueError(
                    f"layer {layer} caches keys of shape {tuple(old[0].shape)}; new keys of "
                    f"shape {tuple(k.shape)} do not continue them"
                )
            new = [torch.cat([a, b], dim=-2) for a, b in zip(old, new, strict=True)]
        self.store[layer] = new
        qk, sk, qv, sv = new
        return qk.to(k.dtype) * sk, qv.to(v.dtype) * sv  # (B, H_kv, S, d) each

    def memory_bytes(self) -> int:
        """Bytes of the stored integers and scales."""
        return sum(t.numel() * t.element_size() for s in self.store if s for t in s)


# --- speculative decoding ----------------------------------------------------------------------


def early_exit(model: nn.Module, num_layers: int) -> nn.Module:
    """A draft model made of ``model``'s first ``num_layers`` layers, its final norm and head.

    No weight is copied: the draft's modules *are* the model's, so it costs no memory (as in
    LayerSkip, Elhoushi et al., 2024, though that model is trained for early exits and this
    one is not). Switching the draft to training mode switches the shared layers too.

    Args:
        model: a model with ``layers`` (an ``nn.ModuleList``) and a dataclass ``config`` with
            ``num_layers``, such as :class:`attention_book.llama.Llama`.
        num_layers: how many of the first layers to keep, from 1 to the model's count.

    Returns:
        A model of the same class, following the generation protocol.
    """
    num_layers = validation.check_positive_int("num_layers", num_layers)
    if not isinstance(getattr(model, "layers", None), nn.ModuleList):
        raise TypeError(f"early_exit needs a model with .layers, got {type(model).__name__}")
    total = model.config.num_layers
    if num_layers > total:
        raise ValueError(f"num_layers={num_layers} exceeds the model's {total} layers")
    draft = copy.copy(model)  # a new module object whose attributes point at the model's
    draft._modules = dict(model._modules)  # its own table of submodules, the same modules
    draft.layers = nn.ModuleList(list(model.layers)[:num_layers])
    draft.config = dataclasses.replace(model.config, num_layers=num_layers)
    return draft


def speculative_distribution(p: Tensor, q: Tensor) -> Tensor:
    """The distribution of the token the accept/reject rule emits, computed exactly.

    The draft proposes x ~ q; the target accepts it with probability min(1, p(x) / q(x)),
    otherwise draws from max(p - q, 0), renormalised. Summing the two ways to emit each token
    gives p itself (Leviathan et al., 2023, appendix A.1); this function does the sum.

    Args:
        p, q: ``(V,)`` probabilities of the target and the draft.

    Returns:
        ``(V,)`` the probability of each emitted token.
    """
    if p.shape != q.shape or p.dim() != 1:
        raise ValueError(
            f"p and q must be (V,) of one shape, got {tuple(p.shape)}, {tuple(q.shape)}"
        )
    accepted = torch.minimum(p, q)  # (V,) q(x) * min(1, p(x) / q(x))
    residual = (p - q).clamp_min(0)  # (V,)
    if residual.sum() == 0:
        return accepted
    return accepted + (1 - accepted.sum()) * residual / residual.sum()


def prompt_lookup(ids: list[int], num_draft: int, max_ngram: int = 3) -> list[int]:
    """Draft tokens copied from earlier in the text: prompt-lookup decoding.

    Finds the latest earlier occurrence of the text's last n tokens (n from ``max_ngram`` down
    to 1) and proposes the tokens that followed it.

    Args:
        ids: the tokens so far.
        num_draft: the most tokens to propose.
        max_ngram: the longest suffix to match.

    Returns:
        Up to ``num_draft`` tokens (none if no suffix occurred before).
    """
    for n in range(min(max_ngram, len(ids) - 1), 0, -1):
        suffix = ids[-n:]
        for start in range(len(ids) - n - 1, -1, -1):
            if ids[start : start + n] == suffix:
                return ids[start + n : start + n + num_draft]
    return []


def _propose(
    draft: nn.Module, cache: generation.KVCache, ids: Tensor, k: int, rules: dict, generator
) -> tuple[list[int], Tensor]:
    """k tokens from the draft model, each with the distribution it was drawn from."""
    tokens, dists = [], []
    step = ids[:, cache.length :]  # (1, n): the tokens the draft has not read yet
    for _ in range(k):
        logits = draft(step, cache=cache)[0, -1]  # (V,)
        q = generation.next_token_distribution(logits, **rules)  # (V,)
        if rules["temperature"] == 0:
            x = int(q.argmax())
        else:
            x = int(torch.multinomial(q, 1, generator=generator))
        tokens.append(x)
        dists.append(q)
        step = torch.tensor([[x]], device=ids.device)  # (1, 1)
    return tokens, torch.stack(dists) if dists else None  # (k, V)


@torch.no_grad()
def speculative_generate(
    target: nn.Module,
    draft: nn.Module | str,
    ids: Tensor,
    max_new_tokens: int,
    *,
    num_draft: int = 4,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, int]]:
    """Generate with a draft that proposes tokens and a target that checks them in one pass.

    Each round the draft proposes up to ``num_draft`` tokens; the target reads them all in one
    forward pass, accepts each proposed x with probability min(1, p(x) / q(x)) in order, and
    at the first rejection draws a replacement from max(p - q, 0); if all are accepted it adds
    one token of its own. The emitted tokens follow the target's distribution exactly
    (Leviathan et al., 2023; Chen et al., 2023); with ``temperature=0`` they are the target's
    greedy tokens.

    Args:
        target: the model whose distribution is kept (generation protocol).
        draft: a model with the same vocabulary (e.g. :func:`early_exit`), or
            ``"prompt_lookup"`` (:func:`prompt_lookup`, a draft with q one-hot).
        ids: ``(1, T)`` prompt ids; one sequence at a time.
        max_new_tokens: how many tokens to add at most.
        num_draft: tokens proposed per round, at least 1.
        temperature, top_k, top_p: the sampling rules of
            :func:`generation.next_token_distribution`, applied to target and draft alike.
        eos_id: stop after this token.
        generator: a seeded ``torch.Generator`` makes sampling reproducible.

    Returns:
        ``(ids, stats)``: ``(1, T + n)`` ids, and ``stats`` with ``proposed``, ``accepted``
        (draft tokens) and ``rounds`` (target forward passes). Drafts after ``eos_id`` in a
        round count as proposed but not accepted, even where they matched.
    """
    num_draft = validation.check_positive_int("num_draft", num_draft)
    generation._check_sampling(temperature, top_k, top_p)
    max_new_tokens = validation.check_non_negative_int("max_new_tokens", max_new_tokens)
    if not isinstance(ids, Tensor) or ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids must be an int tensor of token ids, got {type(ids).__name__}")
    if ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] < 1:
        raise ValueError(
            f"speculative_generate takes one sequence, ids of shape (1, T) with T >= 1; got "
            f"{tuple(ids.shape)}"
        )
    lookup = isinstance(draft, str)
    if lookup and draft != "prompt_lookup":
        raise ValueError(f"draft must be a model or 'prompt_lookup', got {draft!r}")
    vocab = target.config.vocab_size
    if not lookup and getattr(draft.config, "vocab_size", vocab) != vocab:
        raise ValueError(
            f"the draft's vocabulary ({draft.config.vocab_size}) differs from the target's "
            f"({vocab}): their probabilities cannot be compared token by token"
        )
    if ids.shape[1] + max_new_tokens > target.config.max_len:
        raise ValueError(
            f"a prompt of {ids.shape[1]} tokens plus max_new_tokens={max_new_tokens} exceeds "
            f"the model's max_len={target.config.max_len}"
        )
    rules = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    ids = ids.long()
    prompt_len = ids.shape[1]
    t_cache = generation.KVCache(target.config.num_layers)
    d_cache = None if lookup else generation.KVCache(draft.config.num_layers)
    stats = {"proposed": 0, "accepted": 0, "rounds": 0}
    draft_mode = contextlib.nullcontext() if lookup else train.eval_mode(draft)
    with train.eval_mode(target), draft_mode:
        while ids.shape[1] - prompt_len < max_new_tokens:
            L = ids.shape[1]
            k = min(num_draft, max_new_tokens - (L - prompt_len) - 1)
            if lookup:
                proposed, q = prompt_lookup(ids[0].tolist(), k), None
            elif k > 0:
                proposed, q = _propose(draft, d_cache, ids, k, rules, generator)
            else:
                proposed, q = [], None
            step = torch.cat([ids[:, t_cache.length :], ids.new_tensor([proposed])], dim=1)
            logits = target(step, cache=t_cache)[0, -(len(proposed) + 1) :]  # (k + 1, V)
            if logits.shape[-1] != vocab:
                raise ValueError(f"the target gave {logits.shape[-1]} logits, not {vocab}")
            p = generation.next_token_distribution(logits, **rules)  # (k + 1, V)
            new = accept_reject(p, q, proposed, temperature=temperature, generator=generator)
            n_accepted = len(new) - 1
            if eos_id is not None and eos_id in new:
                new = new[: new.index(eos_id) + 1]
            stats["proposed"] += len(proposed)
            stats["accepted"] += min(n_accepted, len(new))  # drafts after <eos> are not kept
            stats["rounds"] += 1
            ids = torch.cat([ids, ids.new_tensor([new])], dim=1)  # (1, L) -> (1, L + n + 1)
            t_cache.crop(L + n_accepted)  # keys of the rejected drafts are dropped
            if d_cache is not None:
                d_cache.crop(min(d_cache.length, L + n_accepted))
            if eos_id is not None and new[-1] == eos_id:
                break
    return ids, stats


def accept_reject(
    p: Tensor,
    q: Tensor | None,
    proposed: list[int],
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[int]:
    """The tokens one round of speculative decoding emits.

    Proposed token i is accepted with probability min(1, p_i(x) / q_i(x)), in order; at the
    first rejection a token is drawn from max(p_i - q_i, 0), renormalised, and the round ends;
    if every token is accepted, one more is drawn from the last row of p.

    Args:
        p: ``(k + 1, V)`` the target's distributions after each proposed token (and before).
        q: ``(k, V)`` the draft's distributions the tokens were drawn from; None for a
            deterministic draft (q one-hot on each proposed token).
        proposed: the k proposed tokens.
        temperature: 0 is greedy (accept exactly the target's argmax).
        generator: for the uniform draws and the replacement.

    Returns:
        The accepted tokens followed by one token of the target's: 1 to k + 1 tokens.
    """
    if p.dim() != 2 or p.shape[0] != len(proposed) + 1:
        raise ValueError(f"p must be (k + 1, V) for k = {len(proposed)}, got {tuple(p.shape)}")
    new = []
    for i, x in enumerate(proposed):
        qx = 1.0 if q is None else float(q[i, x])
        if temperature == 0:
            ok = bool(p[i, x] == 1)
        else:
            u = float(torch.rand((), generator=generator, dtype=torch.float64))
            ok = u < float(p[i, x]) / qx
        if not ok:
            if q is None:
                q_i = torch.zeros_like(p[i])
                q_i[x] = 1.0
            else:
                q_i = q[i]
            return new + [_draw(p[i], q_i, temperature, generator)]
        new.append(x)
    return new + [_draw(p[len(proposed)], None, temperature, generator)]


def _draw(p: Tensor, q: Tensor | None, temperature: float, generator) -> int:
    """The target's token: from p (q None), or, after a rejection, from max(p - q, 0)."""
    if q is not None:
        residual = (p - q).clamp_min(0)  # (V,)
        if residual.sum() > 0:
            p = residual / residual.sum()
    if temperature == 0:
        return int(p.argmax())
    return int(torch.multinomial(p, 1, generator=generator))


def acceptance_rate(stats: dict[str, int]) -> float:
    """Accepted draft tokens over proposed ones (NaN never: 0 proposed gives 0.0)."""
    return stats["accepted"] / stats["proposed"] if stats["proposed"] else 0.0


__all__ = [
    "BlockPool",
    "PagedKVCache",
    "QuantizedKVCache",
    "SinkCache",
    "accept_reject",
    "acceptance_rate",
    "early_exit",
    "prompt_lookup",
    "quantize",
    "speculative_distribution",
    "speculative_generate",
]
