"""Sinusoidal positional encoding and its shift matrices (Vaswani et al., 2017, section 3.5)."""

from __future__ import annotations

import torch
from torch import Tensor

from attention_book import validation

#: The base of the wavelengths, 10000 in the paper.
BASE = 10000.0


def angular_frequencies(d_model: int) -> Tensor:
    """The D/2 angular frequencies omega_i = 1 / 10000^(2i/d_model), i = 0 .. D/2 - 1.

    Pair i of the encoding is (sin(pos * omega_i), cos(pos * omega_i)); its wavelength is
    2 pi / omega_i, from 2 pi (i = 0) up to almost 2 pi * 10000.

    Args:
        d_model: D, a positive even int.

    Returns:
        float64 tensor of shape ``(D/2,)``, decreasing from 1.
    """
    validation.check_positive_int("d_model", d_model)
    if d_model % 2:
        raise ValueError(f"d_model must be even to pair sines with cosines, got {d_model}")
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,)
    return 1.0 / BASE ** (two_i / d_model)  # (D/2,)


def sinusoidal_encoding(num_positions: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).

    Args:
        num_positions: how many positions (0 .. num_positions - 1), a positive int.
        d_model: D, the encoding's width; a positive even int, so sines and cosines pair up.

    Returns:
        float32 tensor of shape ``(num_positions, d_model)``, every value in [-1, 1].
    """
    validation.check_positive_int("num_positions", num_positions)
    omega = angular_frequencies(d_model)  # (D/2,)
    # Computed in float64: at positions in the thousands float32 angles lose digits.
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    angle = pos * omega  # (P, 1) * (D/2,) -> (P, D/2)
    pe = torch.empty(num_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()  # (P, D)


def shift_matrix(k: int, d_model: int) -> Tensor:
    """M_k, the block-diagonal rotation with PE(pos + k) = M_k PE(pos) for every pos.

    Pair i of the encoding is turned by the angle k * omega_i; M_k depends on the shift k but not
    on the position (the property section 3.5 of the paper gives for choosing sinusoids). M_k is
    orthogonal, M_0 is the identity, M_a M_b = M_(a+b), and M_(-k) = M_k^T.

    Args:
        k: the shift in positions, an int (negative shifts go back).
        d_model: D, a positive even int.

    Returns:
        float64 tensor of shape ``(D, D)``: a 2 x 2 rotation
        ``[[cos k omega_i, sin k omega_i], [-sin k omega_i, cos k omega_i]]`` on each pair.
    """
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    angle = k * angular_frequencies(d_model)  # (D/2,)
    c, s = torch.cos(angle), torch.sin(angle)  # (D/2,) each
    even = torch.arange(0, d_model, 2)  # the sine coordinate of each pair
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    # angle addition: sin((p+k)w) = sin(pw) cos(kw) + cos(pw) sin(kw),
    #                 cos((p+k)w) = cos(pw) cos(kw) - sin(pw) sin(kw)
    m[even, even], m[even, even + 1] = c, s
    m[even + 1, even], m[even + 1, even + 1] = -s, c
    return m  # (D, D)
