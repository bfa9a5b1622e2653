"""Sinusoidal positional encoding (Vaswani et al., 2017, section 3.5)."""

from __future__ import annotations

import torch
from torch import Tensor


def sinusoidal_encoding(num_positions: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).

    Args:
        num_positions: how many positions (0 .. num_positions - 1), a positive int.
        d_model: D, the encoding's width; a positive even int, so sines and cosines pair up.

    Returns:
        float32 tensor of shape ``(num_positions, d_model)``, every value in [-1, 1].
    """
    for name, n in (("num_positions", num_positions), ("d_model", d_model)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")
    if d_model % 2:
        raise ValueError(f"d_model must be even to pair sines with cosines, got {d_model}")
    # Computed in float64: at positions in the thousands float32 angles lose digits.
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,)
    angle = pos / 10000.0 ** (two_i / d_model)  # (P, 1) / (D/2,) -> (P, D/2)
    pe = torch.empty(num_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()  # (P, D)
