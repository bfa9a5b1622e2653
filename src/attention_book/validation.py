"""Argument checks shared by the package, so every module words its errors the same way."""

from __future__ import annotations


def check_positive_int(name: str, n: object) -> None:
    """Raise ValueError unless ``n`` is an int of at least 1 (``True`` is not accepted).

    Args:
        name: the argument's name, used in the message.
        n: the value to check.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
