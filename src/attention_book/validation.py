"""Argument checks shared by the package, so every module words its errors the same way.

An integer argument accepts whatever Python accepts as an index (:func:`operator.index`): a
Python int, a NumPy integer, a one-element integer tensor. ``True`` and ``False`` are refused,
although Python counts them as ints: ``steps=True`` is a mistake, not the number 1.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch


def check_int(name: str, n: object, minimum: int | None = None) -> int:
    """Return ``n`` as a Python int; raise ValueError unless it is an integer ``>= minimum``.

    Args:
        name: the argument's name, used in the message.
        n: the value to check.
        minimum: the smallest value allowed; None allows any integer.

    Returns:
        ``operator.index(n)``, a plain ``int``.
    """
    kind = {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(
        minimum, f"an int >= {minimum}"
    )
    is_bool = isinstance(n, bool) or (isinstance(n, torch.Tensor) and n.dtype == torch.bool)
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
    """Return ``x`` as a Python float; raise unless it is a real number (not a bool) and not NaN.

    Args:
        name: the argument's name, used in the message.
        x: the value to check; ranges are the caller's to check.

    Returns:
        ``float(x)``.
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a float, got {x!r} of type {type(x).__name__}")
    if math.isnan(x):
        raise ValueError(f"{name} must be a number, got NaN")
    return float(x)


def check_ids(name: str, ids: object, dims: int = 2) -> torch.Tensor:
    """Return ``ids``; raise unless it is a LongTensor of ``dims`` dimensions, the last not empty.

    Args:
        name: the argument's name, used in the message.
        ids: the token ids to check.
        dims: how many dimensions ``(B, length)`` has (2 by default).
    """
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long:
        got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise TypeError(f"{name} must be a LongTensor of token ids, got {got}")
    if ids.dim() != dims or ids.shape[-1] == 0:
        raise ValueError(f"{name} must have {dims} dimensions (B, length), got {tuple(ids.shape)}")
    return ids
