"""Positions: sinusoidal encoding and its shift matrices (Vaswani et al., 2017, section 3.5), and
rotary position embedding (RoPE, Su et al., 2021): the same rotations, applied to queries and keys.
"""

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


def rope_cos_sin(
    positions: Tensor, d: int, base: float = BASE, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """The cosines and sines by which rotary position embedding (RoPE) turns each position.

    Pair i of a head's d coordinates, (x_i, x_(i + d/2)) in the rotate-half layout, is turned by
    the angle ``pos * base^(-2i/d)``: the frequencies of :func:`angular_frequencies` when base is
    10000. Computed once per forward pass and shared by every layer.

    Args:
        positions: ``(T,)`` integer positions.
        d: the head width, a positive even int.
        base: the base of the wavelengths (10000 in the 2017 paper, 100000 in SmolLM2).
        dtype: the dtype returned (the angles are computed in float64).

    Returns:
        ``(cos, sin)``, each ``(T, d)``: the cosines and sines of the d/2 angles, written twice.
    """
    validation.check_positive_int("d", d)
    if d % 2:
        raise ValueError(f"RoPE rotates pairs of coordinates, so d must be even, got {d}")
    integer = isinstance(positions, Tensor) and not positions.dtype.is_floating_point
    if not integer or positions.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise ValueError(f"positions must be a (T,) integer tensor, got {positions!r}")
    if positions.dim() != 1:
        raise ValueError(f"positions must be a (T,) integer tensor, got shape {positions.shape}")
    if not validation.check_number("base", base) > 1:
        raise ValueError(f"base must be a finite number greater than 1, got {base!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    two_i = torch.arange(0, d, 2, dtype=torch.float64, device=positions.device)  # (d/2,)
    omega = 1.0 / base ** (two_i / d)  # (d/2,)
    # float64 angles, as in sinusoidal_encoding: far positions keep their digits.
    angle = positions.double()[:, None] * omega  # (T, 1) * (d/2,) -> (T, d/2)
    angle = torch.cat([angle, angle], dim=-1)  # (T, d/2) -> (T, d)
    return angle.cos().to(dtype), angle.sin().to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    """(x_1, x_2) -> (-x_2, x_1) on the two halves of the last dimension: a quarter turn."""
    if x.shape[-1] % 2:
        raise ValueError(f"rotate_half needs an even last dimension, got shape {tuple(x.shape)}")
    x1, x2 = x.chunk(2, dim=-1)  # (..., d) -> 2 x (..., d/2)
    return torch.cat([-x2, x1], dim=-1)  # (..., d)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Turn every pair of ``x`` by the angles whose cosines and sines :func:`rope_cos_sin` gave.

    Args:
        x: ``(..., T, d)`` queries or keys.
        cos, sin: ``(T, d)`` each.

    Returns:
        ``(..., T, d)``, each pair rotated, so lengths are unchanged.
    """
    return x * cos + rotate_half(x) * sin  # (..., T, d)


def apply_rope(x: Tensor, positions: Tensor, base: float = BASE) -> Tensor:
    """Rotary position embedding (Su et al., 2021) in the rotate-half convention of LLaMA.

    Pair i of each vector, (x_i, x_(i + d/2)), is rotated by the angle ``pos * base^(-2i/d)``.
    Applied to queries and keys after their projections, it makes a score q_m . k_n depend on the
    positions only through the offset m - n.

    Args:
        x: ``(..., T, d)`` with d even (a head's queries or keys).
        positions: ``(T,)`` integer positions of the T rows.
        base: the base of the wavelengths.

    Returns:
        A tensor of the same shape and dtype as ``x``.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError("x must be a floating-point tensor of shape (..., T, d)")
    if not isinstance(positions, Tensor) or positions.shape != (x.shape[-2],):
        raise ValueError(
            f"positions must be ({x.shape[-2]},), one per row of x {tuple(x.shape)}; "
            f"got {getattr(positions, 'shape', positions)}"
        )
    cos, sin = rope_cos_sin(positions, x.shape[-1], base, x.dtype)  # (T, d) each
    return rotate(x, cos, sin)  # (..., T, d)
