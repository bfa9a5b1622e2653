"""Argument checks shared by the package, so every module words its errors the same way.

An integer is anything :func:`operator.index` accepts (NumPy integers, one-element integer
tensors), but never a bool: ``steps=True`` is a mistake, not the number 1."""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np
import torch


def check_int(name: str, n: object, minimum: int | None = None) -> int:
    """``n`` as a Python int; ValueError unless it is an integer ``>= minimum`` (None: any)."""
    kind = {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(
        minimum, f"an int >= {minimum}"
    )
    is_bool = isinstance(n, bool | np.bool_) or (
        isinstance(n, torch.Tensor) and n.dtype == torch.bool
    )
    try:
        value = None if is_bool else operator.index(n)
    except TypeError:  # a float, a string, None, a tensor of several elements...
        value = None
    if value is None:
        raise ValueError(f"{name} must be {kind}, got {n!r} of type {type(n).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {kind}, got {value}")
    return value


def check_positive_int(name: str, n: object) -> int:
    """Return ``n`` as an int; raise ValueError unless it is an integer of at least 1."""
    return check_int(name, n, minimum=1)


def check_non_negative_int(name: str, n: object) -> int:
    """Return ``n`` as an int; raise ValueError unless it is an integer of at least 0."""
    return check_int(name, n, minimum=0)


def check_float(name: str, x: object) -> float:
    """``x`` as a Python float; raise unless a real number (not a bool), not NaN."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a float, got {x!r} of type {type(x).__name__}")
    if math.isnan(x):
        raise ValueError(f"{name} must be a number, got NaN")
    return float(x)


def check_number(name: str, x: object, *, finite: bool = True) -> float:
    """``x`` as a Python float; raise unless a real number (NumPy too, no bool), finite if asked."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a number, got {x!r} of type {type(x).__name__}")
    value = float(x)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def check_bool(name: str, x: object) -> bool:
    """Return ``x`` as a Python bool; raise TypeError unless it is ``True``, ``False`` or a
    NumPy bool. A truthy string such as ``"False"`` is refused, not read as True."""
    if not isinstance(x, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {x!r} of type {type(x).__name__}")
    return bool(x)


def check_probability(name: str, p: object) -> float:
    """Return ``p`` as a float in [0, 1) (a dropout probability); raise otherwise."""
    value = check_number(name, p)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def check_choice(name: str, x: object, choices: tuple[str, ...]) -> str:
    """Return ``x``; raise ValueError unless it is one of ``choices``."""
    if not isinstance(x, str) or x not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {x!r}")
    return x


def check_float_tensor(name: str, x: object) -> torch.Tensor:
    """Return ``x``; raise TypeError unless it is a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_states(
    name: str, x: object, d_model: int, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``x``; raise unless a ``(B, T, d_model)`` float tensor of ``dtype`` (None: any float)."""
    check_float_tensor(name, x)
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(
            f"{name} must be (B, length, d_model={d_model}) (batch-first), got {tuple(x.shape)}"
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but the module's parameters are {dtype}")
    return x


def check_ids(
    name: str,
    ids: object,
    dims: int = 2,
    *,
    vocab_size: int | None = None,
    max_len: int | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """``ids``; raise unless a LongTensor of ``dims`` dimensions (last not empty) whose ids lie in
    ``[0, vocab_size)`` and whose ``offset + length`` is at most ``max_len`` (where given)."""
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long:
        got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise TypeError(f"{name} must be a LongTensor of token ids, got {got}")
    if ids.dim() != dims or ids.shape[-1] == 0:
        raise ValueError(f"{name} must have {dims} dimensions (B, length), got {tuple(ids.shape)}")
    if max_len is not None and offset + ids.shape[-1] > max_len:
        shape = tuple(ids.shape)
        if offset:
            raise ValueError(
                f"{offset} cached positions plus {name} of shape {shape} exceed max_len={max_len}"
            )
        raise ValueError(f"{name} has length {shape[-1]} > max_len={max_len} (shape {shape})")
    if vocab_size is not None and ids.numel():
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{name} holds ids in [{low}, {high}], outside the vocabulary [0, {vocab_size})"
            )
    return ids


def check_attention_inputs(q: object, k: object, v: object, mask: object = None) -> None:
    """Raise TypeError or ValueError unless ``q (..., T, d_k)``, ``k (..., S, d_k)``,
    ``v (..., S, d_v)`` and a bool ``mask`` broadcastable to ``(..., T, S)`` fit together."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float_tensor(name, x)
        if x.dim() < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., len, dim), "
                f"got shape {tuple(x.shape)}"
            )
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(
            f"q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}"
        )
    if not q.device == k.device == v.device:
        raise ValueError(
            f"q, k and v must be on one device, got q {q.device}, k {k.device}, v {v.device}"
        )
    shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if q.shape[-1] == 0:
        raise ValueError(f"d_k must be at least 1 (the scale is 1/sqrt(d_k)); got {shapes}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension d_k; got {shapes}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys S; got {shapes}")
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the batch dimensions of q, k and v do not broadcast; got {shapes}"
        ) from None
    if mask is not None:
        check_mask(mask, (*batch, q.shape[-2], k.shape[-2]), shapes)


def check_mask(mask: object, scores: tuple[int, ...], context: str = "") -> None:
    """Raise unless ``mask`` is bool (True = may attend) and broadcasts to ``scores``; a float
    (additive) mask is refused. ``context`` is appended to the message."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must have dtype torch.bool (True = may attend), got {mask.dtype}; "
            f"for an additive float mask m pass m == 0"
        )
    try:
        fits = torch.broadcast_shapes(mask.shape, scores) == torch.Size(scores)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' "
            f"shape (..., T, S) = {tuple(scores)}; {context}"
        )


def check_even(name: str, n: int, why: str) -> None:
    """Raise ValueError unless ``n`` is even; ``why`` says what needs it."""
    if n % 2:
        raise ValueError(f"{name} must be even {why}, got {n}")


def check_heads(d_model: int, num_heads: int, num_kv_heads: int | None = None) -> None:
    """Raise unless ``num_heads`` divides ``d_model`` and ``num_kv_heads`` divides ``num_heads``."""
    if d_model % num_heads:
        raise ValueError(
            f"d_model={d_model} is not divisible by num_heads={num_heads}: "
            f"each head needs d_k = d_model / num_heads to be a whole number"
        )
    if num_kv_heads is not None and num_heads % num_kv_heads:
        raise ValueError(
            f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads}: "
            f"each key/value head serves the same number of query heads"
        )


def check_cache(cache: object, num_layers: int, rotary: bool = True) -> int:
    """``cache.length`` (0 for None); raise unless ``cache`` follows the protocol of
    :mod:`attention_book.multihead` with ``num_layers`` layers. A model with absolute positions
    (``rotary=False``) refuses a cache that rotates keys by their place in it."""
    if cache is None:
        return 0
    if not all(hasattr(cache, name) for name in ("length", "update", "memory_bytes")):
        raise TypeError(f"cache must be a KVCache or None, got {type(cache).__name__}")
    if not rotary and getattr(cache, "rotates_keys", False):
        raise ValueError(
            f"{type(cache).__name__} rotates keys by their place in the cache, which needs a "
            f"model with rotary positions (llama.Llama); this model adds absolute positions"
        )
    layers = getattr(cache, "num_layers", num_layers)
    if layers != num_layers:
        raise ValueError(
            f"the cache holds {layers} layers but the model has {num_layers}: "
            f"build it as KVCache({num_layers})"
        )
    return cache.length


def check_memory(memory: object, src_mask: object, B: int, d_model: int) -> None:
    """Raise unless ``memory`` is an encoder output ``(B, S, d_model)`` and ``src_mask`` its
    ``(B, 1, 1, S)`` bool padding mask, for a decoder input of batch size ``B``."""
    check_states("memory", memory, d_model)
    if memory.shape[0] != B:
        raise ValueError(
            f"memory must be (B, S, d_model={d_model}) with the B = {B} of tgt, "
            f"got {tuple(memory.shape)}"
        )
    S = memory.shape[1]
    if not isinstance(src_mask, torch.Tensor) or tuple(src_mask.shape) != (B, 1, 1, S):
        got = tuple(src_mask.shape) if isinstance(src_mask, torch.Tensor) else src_mask
        raise ValueError(
            f"src_mask must be (B, 1, 1, S) = {(B, 1, 1, S)} for memory "
            f"{tuple(memory.shape)}, got {got}"
        )


def check_cache_update(
    layer: int, num_layers: int, k: torch.Tensor, v: torch.Tensor, name: str
) -> int:
    """``layer`` as an index below ``num_layers``, and ``k``, ``v`` as ``(B, H_kv, T_new, d)``
    with equal leading sizes; ``name`` is the cache class the error tells the caller to build."""
    layer = check_non_negative_int("layer", layer)
    if layer >= num_layers:
        raise ValueError(
            f"layer {layer} is outside this cache of {num_layers} layers; build the cache "
            f"with {name}(model.config.num_layers)"
        )
    if k.dim() != 4 or v.dim() != 4 or k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"k and v must be (B, H_kv, T_new, d) with equal B, H_kv and T_new; "
            f"got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    return layer
